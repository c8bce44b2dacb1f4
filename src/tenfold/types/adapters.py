"""The adapter deployment object of ``/v1/adapters`` (deploy, dry run, list, retrieve).

Owns: ``Adapter``: what a model name (a job id) serves, a final adapter or one checkpoint, and the dry-run
fields ``would_replace`` and ``message``. Undeploy answers ``tenfold.types.common.Deleted``. Does not own:
the deploy body (``tenfold.types.fine_tuning.AdapterDeploy``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tenfold.types.common import ResponseModel


class Adapter(ResponseModel):
    id: str = Field(description="the model name: the job id")
    object: Literal["adapter"] = "adapter"
    model: str
    base_model: str
    checkpoint: str | None = Field(default=None, description="<job id>/step-<N>; null for the final adapter")
    source: str = Field(description="what serves: the checkpoint, or the job id for its final adapter")
    created_at: int | None = None
    updated_at: int | None = None
    status: Literal["deployed", "dry_run"]
    endpoint: str = Field(description="the OpenAI-compatible base URL to call it at")
    verified: bool = Field(description="a smoke generation ran after loading")
    digest: str
    replaced: str | None = Field(default=None, description="what this model name served before")
    would_replace: str | None = Field(default=None, description="dry run only: what a deploy would replace")
    message: str | None = Field(default=None, description="dry run only: what a deploy would do")


__all__ = ["Adapter"]
