"""``/v1/deployments``: dedicated deployments (create, list, get, update, delete, undelete)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request

from tenfold.api.contract import errors
from tenfold.api.deps import PageParams, ctx, list_body, page_params, principal
from tenfold.api.serialize import deployment_obj
from tenfold.context import Principal
from tenfold.deployments import service
from tenfold.types.common import ListResponse
from tenfold.types.deployments import Deployment, DeploymentCreate, DeploymentUpdate

router = APIRouter(prefix="/v1/deployments")


@router.post("", response_model=Deployment, responses=errors(400, 401))
async def create(request: Request, body: DeploymentCreate, p: Principal = Depends(principal)) -> dict:
    view = await service.create(
        ctx(request), p, base_model=body.base_model, hardware_profile=body.hardware_profile,
        min_replicas=body.min_replicas, max_replicas=body.max_replicas, target_rps=body.target_rps,
        target_latency_p95_ms=body.target_latency_p95_ms, scale_down_window_s=body.scale_down_window_s,
        display_name=body.display_name, engine=body.engine, hf_token=body.hf_token)
    return deployment_obj(view)


@router.get("", response_model=ListResponse[Deployment], responses=errors(400, 401))
def list_deployments(request: Request, page: PageParams = Depends(page_params),
                     include_deleted: bool = Query(False, description="Also list deleted deployments (undeletable "
                                                                      "within the grace period)."),
                     p: Principal = Depends(principal)) -> dict:
    views, more = service.list_views(ctx(request), p, limit=page.limit, after=page.after,
                                     include_deleted=include_deleted)
    return list_body([deployment_obj(v) for v in views], more)


@router.get("/{deployment_id}", response_model=Deployment, responses=errors(401, 404))
def get(request: Request, deployment_id: str, p: Principal = Depends(principal)) -> dict:
    return deployment_obj(service.view(ctx(request), p, deployment_id))


@router.patch("/{deployment_id}", response_model=Deployment, responses=errors(400, 401, 404))
def update(request: Request, deployment_id: str, body: DeploymentUpdate, p: Principal = Depends(principal)) -> dict:
    return deployment_obj(service.update(ctx(request), p, deployment_id, **body.model_dump(exclude_unset=True)))


@router.delete("/{deployment_id}", response_model=Deployment, responses=errors(400, 401, 404, 409))
def delete(request: Request, deployment_id: str,
           force: bool = Query(False, description="Detach the adapters it serves and delete it anyway."),
           p: Principal = Depends(principal)) -> dict:
    return deployment_obj(service.delete(ctx(request), p, deployment_id, force=force))


@router.post("/{deployment_id}/undelete", response_model=Deployment, responses=errors(401, 404, 409))
def undelete(request: Request, deployment_id: str, p: Principal = Depends(principal)) -> dict:
    return deployment_obj(service.undelete(ctx(request), p, deployment_id))
