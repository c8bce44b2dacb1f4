"""``/v1/adapters``: deploy a job's final adapter or a checkpoint (on shared serving, or on a dedicated deployment
as ``<job>#<deployment>``), plan a deploy, import an adapter trained elsewhere (``adp-…``), list, get, undeploy
(or delete an import deployed nowhere)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from tenfold.adapters import imports
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


@router.post("/import", response_model=Adapter, response_model_exclude_unset=True,
             responses=errors(400, 401, 409, 413, 503))
async def import_adapter(
        request: Request,
        file: UploadFile | None = File(None, description="a .tar or .tar.zst of a PEFT LoRA folder "
                                                         "(adapter_config.json, adapter_model.safetensors)"),
        hub_id: str | None = Form(None, description="or a Hugging Face Hub repository id (owner/name) to fetch"),
        revision: str | None = Form(None, description="the Hub revision (branch, tag or commit); default main"),
        base_model: str | None = Form(None, description="the base model it is for; default: the served base its "
                                                        "base_model_name_or_path names"),
        name: str | None = Form(None, description="a name, unique within your organization"),
        p: Principal = Depends(principal)) -> dict:
    """Import a PEFT LoRA adapter trained elsewhere; it is validated against the base before anything is stored,
    then deployable (POST /v1/adapters with model adp-… or its name) and callable like a trained one."""
    row = await run_in_threadpool(
        imports.import_adapter, ctx(request), p, data=file.file if file else None, size=file.size if file else None,
        filename=file.filename if file else None, hub_id=hub_id, revision=revision, base_model=base_model, name=name)
    return adapter_obj(None, imported=row, endpoint=_endpoint(request))


@router.get("", response_model=ListResponse[Adapter], response_model_exclude_unset=True, responses=errors(401))
def list_adapters(request: Request, p: Principal = Depends(principal)) -> dict:
    entries = adapters.list_adapters(ctx(request), p)
    return list_body([adapter_obj(e.row, imported=e.imported, endpoint=_endpoint(request)) for e in entries], False)


@router.get("/{model}", response_model=Adapter, response_model_exclude_unset=True, responses=errors(401, 404))
def get_adapter(request: Request, model: str, p: Principal = Depends(principal)) -> dict:
    e = adapters.get(ctx(request), p, model=model)
    return adapter_obj(e.row, imported=e.imported, endpoint=_endpoint(request))


@router.delete("/{model}", response_model=Deleted, responses=errors(401, 404, 409))
def undeploy(request: Request, model: str, p: Principal = Depends(principal)) -> dict:
    """Undeploy ``model``; an imported adapter deployed nowhere is deleted (with its files)."""
    adapters.undeploy(ctx(request), p, model=model)
    return {"id": model, "object": "adapter", "deleted": True}
