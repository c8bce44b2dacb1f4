"""``/v1/adapters``: deploy a job's final adapter or a checkpoint (on shared serving, or on a dedicated deployment
as ``<job>#<deployment>``), plan a deploy, list, get, undeploy."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from tenfold.api.contract import errors
from tenfold.api.deps import ctx, list_body, principal
from tenfold.api.serialize import adapter_obj, adapter_plan_obj
from tenfold.context import Principal
from tenfold.deployments import adapters
from tenfold.types.adapters import Adapter, AdapterDeployPlan
from tenfold.types.common import Deleted, ListResponse
from tenfold.types.fine_tuning import AdapterDeploy

router = APIRouter(prefix="/v1/adapters")


def _endpoint(request: Request) -> str:
    return ctx(request).settings.url + "/v1"


@router.post("", response_model=Adapter, response_model_exclude_unset=True,
             responses=errors(400, 401, 404, 409, 503))
async def deploy(request: Request, body: AdapterDeploy, p: Principal = Depends(principal)) -> dict:
    out = await adapters.deploy(ctx(request), p, model=body.model, verify=body.verify, deployment=body.deployment)
    return adapter_obj(out.row, endpoint=_endpoint(request), replaced=out.replaced)


@router.post("/plans", response_model=AdapterDeployPlan, responses=errors(400, 401, 404, 409))
def plan(request: Request, body: AdapterDeploy, p: Principal = Depends(principal)) -> dict:
    """What deploying ``model`` would do (which checkpoint would serve, what it would replace); changes nothing."""
    return adapter_plan_obj(adapters.plan(ctx(request), p, model=body.model, verify=body.verify,
                                          deployment=body.deployment),
                            endpoint=_endpoint(request))


@router.get("", response_model=ListResponse[Adapter], response_model_exclude_unset=True, responses=errors(401))
def list_adapters(request: Request, p: Principal = Depends(principal)) -> dict:
    rows = adapters.list_adapters(ctx(request), p)
    return list_body([adapter_obj(r, endpoint=_endpoint(request)) for r in rows], False)


@router.get("/{model}", response_model=Adapter, response_model_exclude_unset=True, responses=errors(401, 404))
def get_adapter(request: Request, model: str, p: Principal = Depends(principal)) -> dict:
    return adapter_obj(adapters.get(ctx(request), p, model=model), endpoint=_endpoint(request))


@router.delete("/{model}", response_model=Deleted, responses=errors(401, 404))
def undeploy(request: Request, model: str, p: Principal = Depends(principal)) -> dict:
    adapters.undeploy(ctx(request), p, model=model)
    return {"id": model, "object": "adapter", "deleted": True}
