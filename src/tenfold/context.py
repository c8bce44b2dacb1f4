"""The server context every service receives, and who is asking.

Owns: ``ServerContext`` (settings, database, artifact store, meter, the shared engine, the api-side prompt
builders by base model, the dedicated deployments' replica pools, plus the process's interactive
``Traffic``), ``Principal`` (organization, key, admin flag,
as authenticated by ``tenfold.accounts``) and ``Traffic``. Does not own: building the context (the
composition root, ``tenfold.server``) or any HTTP.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tenfold.artifacts.storage import ArtifactStore
    from tenfold.billing.meter import Meter
    from tenfold.config import Settings
    from tenfold.deployments.pool import DeploymentRuntime
    from tenfold.engine.types import Engine
    from tenfold.inference.prompts import Prompter
    from tenfold.store.db import Database


@dataclass(frozen=True)
class Principal:
    organization_id: str
    api_key_id: str
    is_admin: bool


class Traffic:
    """Interactive (priority 0) requests in flight in this process; the batch runner starts no new line while
    there are any, so batch work uses spare capacity even on an engine that ignores ``priority``."""

    def __init__(self) -> None:
        self.interactive = 0
        self.last_interactive = 0.0  # monotonic time an interactive request last started or ended

    def enter(self) -> None:
        self.interactive += 1
        self.last_interactive = time.monotonic()

    def leave(self) -> None:
        self.interactive -= 1
        self.last_interactive = time.monotonic()

    def idle_for(self) -> float:
        """Seconds since the last interactive request (0 while any is in flight)."""
        return 0.0 if self.interactive > 0 else time.monotonic() - self.last_interactive


@dataclass
class ServerContext:
    settings: Settings
    db: Database
    artifacts: ArtifactStore
    meter: Meter
    engine: Engine | None = None  # the shared engine of ``settings.base_model`` (None in a worker-only process)
    prompter: Prompter | None = None  # chat template and tokenizer of that base model, on the api side
    traffic: Traffic = field(default_factory=Traffic)
    deployments: DeploymentRuntime | None = None  # pools of dedicated deployments' replicas (api processes)
    prompters: dict[str, Prompter] = field(default_factory=dict)  # other base models' (dedicated deployments)
