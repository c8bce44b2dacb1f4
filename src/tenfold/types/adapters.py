"""The adapter deployment object of ``/v1/adapters`` (deploy, dry run, list, retrieve).

Owns: ``Adapter``: what a model name (a job id) serves, a final adapter or one checkpoint, or an imported
adapter (``adp-…``, deployed or not, with its name, origin, rank and target modules); and
``AdapterDeployPlan``, what a dry run says a deploy would do (it creates nothing, so it carries no id).
Undeploy answers ``tenfold.types.common.Deleted``. Does not own: the deploy body
(``tenfold.types.fine_tuning.AdapterDeploy``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tenfold.types.common import ResponseModel


class Adapter(ResponseModel):
    id: str = Field(description="the model name: the job id, or <job id>#<deployment> on a dedicated deployment")
    object: Literal["adapter"] = "adapter"
    model: str
    base_model: str
    checkpoint: str | None = Field(default=None, description="<job id>/step-<N>; null for the final adapter")
    source: str = Field(description="what serves: the checkpoint, or the job id for its final adapter")
    created_at: int | None = None
    updated_at: int | None = None
    status: Literal["deployed", "imported"] = Field(
        default="deployed", description="deployed: callable now; imported: an imported adapter deployed nowhere "
                                        "(deploy it with POST /v1/adapters)")
    endpoint: str = Field(description="the OpenAI-compatible base URL to call it at")
    verified: bool = Field(description="a smoke generation ran after loading")
    digest: str
    replaced: str | None = Field(default=None, description="what this model name served before")
    deployment_id: str | None = Field(default=None, description="the dedicated deployment; null: shared serving")
    name: str | None = Field(default=None, description="an imported adapter's name (unique in the organization)")
    imported_from: str | None = Field(default=None, description="an imported adapter's origin: upload:<file name> "
                                                                "or hf:<repository>[@<revision>]")
    rank: int | None = Field(default=None, description="an imported adapter's LoRA rank")
    target_modules: list[str] | None = Field(default=None, description="an imported adapter's target modules")
    bytes: int | None = Field(default=None, description="an imported adapter's size on disk")


class AdapterDeployPlan(ResponseModel):
    """The answer to a deploy with ``dry_run: true``: nothing was loaded or recorded."""

    object: Literal["adapter.deploy_plan"] = "adapter.deploy_plan"
    status: Literal["dry_run"] = "dry_run"
    would_serve_as: str = Field(description="the model name a deploy would serve it under: the job id (or "
                                            "<job id>#<deployment>)")
    source: str = Field(description="what would serve: the checkpoint, or the job id for its final adapter")
    checkpoint: str | None = None
    base_model: str
    digest: str
    endpoint: str
    verify: bool = Field(description="whether a deploy would run a smoke generation")
    would_replace: str | None = Field(default=None, description="what the model name serves now, if anything")
    message: str


__all__ = ["Adapter", "AdapterDeployPlan"]
