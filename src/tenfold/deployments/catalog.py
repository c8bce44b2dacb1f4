"""What a caller may put in an inference request's ``model`` field (``GET /v1/models``).

Owns: the list: the base model this server serves, then the caller's deployed adapters (each by its job
id, with the checkpoint it serves). Does not own: the wire shape (the api) or routing a request
(``tenfold.deployments.router``).
"""

from __future__ import annotations

from dataclasses import dataclass

from tenfold.context import Principal, ServerContext
from tenfold.errors import not_found
from tenfold.jobs.refs import checkpoint_name
from tenfold.store import repo


@dataclass(frozen=True)
class ModelEntry:
    id: str
    created: int
    owned_by: str
    root: str
    parent: str | None
    checkpoint: str | None


def models_for(c: ServerContext, p: Principal) -> list[ModelEntry]:
    base = c.settings.base_model
    out = [ModelEntry(base, 0, "tenfold", base, None, None)]
    with c.db.session() as s:
        for r in repo.list_adapters(s, organization_id=p.organization_id):
            out.append(ModelEntry(r.model, int(r.created_at), r.organization_id, r.base_model, r.base_model,
                                  checkpoint_name(r.job_id, r.step)))
    return out


def get_model(c: ServerContext, p: Principal, model_id: str) -> ModelEntry:
    for m in models_for(c, p):
        if m.id == model_id:
            return m
    raise not_found("model", model_id, hint="GET /v1/models lists what you can call.")
