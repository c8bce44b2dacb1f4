"""Model routing: the ``model`` field of an inference request → base model, adapter and checkpoint.

Owns: the addressing rules of DESIGN §2 (base model name; job id → whatever was last deployed for it on
shared serving, an imported adapter's ``adp-…`` id likewise; ``dep-…`` → a dedicated deployment's base model;
``<job>#dep-…`` → what the job serves on that deployment) and the ``X-Tenfold-Expected-Checkpoint`` pin.
Does not own: which engine runs a route (``tenfold.inference.routing``), generation or billing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tenfold.context import Principal, ServerContext
from tenfold.engine.types import AdapterRef
from tenfold.errors import Conflict, NotFound
from tenfold.jobs.refs import checkpoint_name
from tenfold.store import adapter_repo, repo
from tenfold.store import deployment_repo as drepo


@dataclass(frozen=True)
class Route:
    model: str
    base_model: str
    adapter: AdapterRef | None
    checkpoint: str | None  # "<job>/step-N" when a checkpoint serves; None for base models and final adapters
    deployment_id: str | None = None  # a dedicated deployment; None for shared serving


_STEP = re.compile(r"^(?:(?P<job>ftjob-[A-Za-z0-9]+)/)?step-(?P<step>\d+)$")


def _on_deployment(c: ServerContext, p: Principal, name: str) -> Route:
    job_id, _, deployment_id = name.partition("#")
    with c.db.session() as s:
        dep = drepo.get_deployment(s, deployment_id=deployment_id or job_id, organization_id=p.organization_id)
        if dep is None or dep.state in ("DELETING", "DELETED"):
            raise NotFound(f"No deployment '{deployment_id or job_id}' is yours and active. GET /v1/deployments lists "
                           "them.", param="model", code="deployment_not_found")
        if dep.state == "FAILED":
            raise Conflict(f"Deployment {dep.id} has FAILED: {dep.failure_reason} Update it (PATCH "
                           f"/v1/deployments/{dep.id}) to try again.", param="model", code="deployment_failed")
        if not deployment_id:
            return Route(name, dep.base_model, None, None, deployment_id=dep.id)
        row = drepo.get_deployment_adapter(s, deployment_id=dep.id, model=job_id)
    if row is None:
        raise NotFound(f"Model '{job_id}' is not deployed on {dep.id}. Deploy it there with `tenfold deploy {job_id} "
                       f"--deployment {dep.id}` (POST /v1/adapters with \"deployment\"), then call it again.",
                       param="model", code="model_not_deployed")
    return Route(name, row.base_model, AdapterRef(digest=row.digest, path=Path(row.path)),
                 checkpoint_name(row.job_id, row.step), deployment_id=dep.id)


def resolve(c: ServerContext, p: Principal, model: str) -> Route:
    name = model.strip()
    if name == c.settings.base_model:
        return Route(name, name, None, None)
    if name.startswith("dep-") or "#dep-" in name:
        return _on_deployment(c, p, name)
    with c.db.session() as s:
        row = repo.get_adapter(s, model=name, organization_id=p.organization_id)
        if row is None:
            job = repo.get_job(s, job_id=name.split("/")[0], organization_id=p.organization_id) or (
                adapter_repo.get_imported(s, organization_id=p.organization_id, key=name)
                if name.startswith("adp-") else None)
    if row is not None:
        return Route(name, row.base_model, AdapterRef(digest=row.digest, path=Path(row.path)),
                     checkpoint_name(row.job_id, row.step))
    if job is not None:
        raise NotFound(f"Model '{name}' is not deployed. Deploy it with `tenfold deploy {name}` "
                       "(POST /v1/adapters), then call it again.", param="model", code="model_not_deployed")
    raise NotFound(f"The model '{name}' does not exist or you do not have access to it. "
                   "GET /v1/models lists what you can call.", param="model", code="model_not_found")


def check_expected_checkpoint(route: Route, expected: str | None) -> None:
    """``None`` = no pin. Compared after stripping whitespace; empty means "no checkpoint"."""
    if expected is None:
        return
    want = expected.strip()
    live = route.checkpoint
    if not want:
        ok = live is None
    elif live is None:
        ok = False
    else:
        m = _STEP.match(want)
        ok = want == live or (m is not None and m["job"] is None and live.endswith("/" + want))
    if not ok:
        shown = live or "no checkpoint (the final adapter or a base model)"
        raise Conflict(f"Model '{route.model}' is serving {shown}, not the expected checkpoint "
                       f"'{want or '(none)'}'. It was redeployed; retry without the pin or pin the live one.",
                       param="X-Tenfold-Expected-Checkpoint", code="checkpoint_mismatch")
