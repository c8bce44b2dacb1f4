"""``GET /v1/models``: the base models and the caller's deployed adapters (OpenAI model objects)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from tenfold.api.contract import errors
from tenfold.api.deps import ctx, list_body, principal
from tenfold.api.serialize import model_obj
from tenfold.context import Principal
from tenfold.deployments import catalog
from tenfold.types.common import ListResponse
from tenfold.types.models import Model

router = APIRouter(prefix="/v1/models")


@router.get("", response_model=ListResponse[Model], responses=errors(401))
def list_models(request: Request, p: Principal = Depends(principal)) -> dict:
    return list_body([model_obj(m) for m in catalog.models_for(ctx(request), p)], False)


@router.get("/{model_id}", response_model=Model, responses=errors(401, 404))
def get_model(request: Request, model_id: str, p: Principal = Depends(principal)) -> dict:
    return model_obj(catalog.get_model(ctx(request), p, model_id))
