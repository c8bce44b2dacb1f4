"""What a caller may put in an inference request's ``model`` field (``GET /v1/models``).

Owns: the list: the base model this server serves, the caller's deployed adapters (each by its job id, with
the checkpoint it serves), and the caller's dedicated deployments (``dep-…``, its base model) with the
adapters each serves (``<job>#dep-…``). Does not own: the wire shape (the api) or routing a request
(``tenfold.deployments.router``).
"""

from __future__ import annotations

from dataclasses import dataclass

from tenfold.context import Principal, ServerContext
from tenfold.errors import not_found
from tenfold.jobs.refs import checkpoint_name
from tenfold.store import deployment_repo as drepo
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
        deployments, _more = drepo.list_deployments(s, organization_id=p.organization_id, limit=1000, after=None)
        for d in deployments:
            if d.state in ("DELETING", "DELETED"):
                continue
            out.append(ModelEntry(d.id, int(d.created_at), d.organization_id, d.base_model, d.base_model, None))
            for a in drepo.list_deployment_adapters(s, deployment_id=d.id):
                out.append(ModelEntry(f"{a.model}#{d.id}", int(a.created_at), d.organization_id, a.base_model,
                                      d.id, checkpoint_name(a.job_id, a.step)))
    return out


def get_model(c: ServerContext, p: Principal, model_id: str) -> ModelEntry:
    for m in models_for(c, p):
        if m.id == model_id:
            return m
    raise not_found("model", model_id, hint="GET /v1/models lists what you can call.")
