"""``GET /v1/models``: the base models and the caller's deployed adapters (OpenAI model objects)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from tenfold.api.deps import Principal, ctx, principal
from tenfold.api.errors import not_found
from tenfold.api.serialize import checkpoint_name
from tenfold.store import repo

router = APIRouter(prefix="/v1/models")


def _models(request: Request, p: Principal) -> list[dict]:
    c = ctx(request)
    base = c.settings.base_model
    out = [{"id": base, "object": "model", "created": 0, "owned_by": "tenfold", "root": base, "parent": None,
            "checkpoint": None}]
    with c.db.session() as s:
        for r in repo.list_adapters(s, organization_id=p.organization_id):
            out.append({"id": r.model, "object": "model", "created": int(r.created_at), "owned_by": r.organization_id,
                        "root": r.base_model, "parent": r.base_model, "checkpoint": checkpoint_name(r.job_id, r.step)})
    return out


@router.get("")
def list_models(request: Request, p: Principal = Depends(principal)) -> dict:
    return {"object": "list", "data": _models(request, p)}


@router.get("/{model_id}")
def get_model(request: Request, model_id: str, p: Principal = Depends(principal)) -> dict:
    for m in _models(request, p):
        if m["id"] == model_id:
            return m
    raise not_found("model", model_id, hint="GET /v1/models lists what you can call.")
