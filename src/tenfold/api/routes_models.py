"""``GET /v1/models``: the base models and the caller's deployed adapters (OpenAI model objects)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from tenfold.api.deps import ctx, principal
from tenfold.api.serialize import model_obj
from tenfold.context import Principal
from tenfold.deployments import catalog

router = APIRouter(prefix="/v1/models")


@router.get("")
def list_models(request: Request, p: Principal = Depends(principal)) -> dict:
    return {"object": "list", "data": [model_obj(m) for m in catalog.models_for(ctx(request), p)]}


@router.get("/{model_id}")
def get_model(request: Request, model_id: str, p: Principal = Depends(principal)) -> dict:
    return model_obj(catalog.get_model(ctx(request), p, model_id))
