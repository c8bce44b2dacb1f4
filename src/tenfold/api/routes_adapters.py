"""``/v1/adapters``: deploy a job's final adapter or a checkpoint, list, get, undeploy."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from tenfold.api.deps import Principal, ctx, list_body, principal
from tenfold.api.errors import not_found
from tenfold.api.serialize import adapter_obj
from tenfold.deployments import adapters
from tenfold.store import repo
from tenfold.types.fine_tuning import AdapterDeploy

router = APIRouter(prefix="/v1/adapters")


@router.post("")
async def deploy(request: Request, body: AdapterDeploy, p: Principal = Depends(principal)) -> dict:
    return await adapters.deploy(ctx(request), p, model=body.model, dry_run=body.dry_run, verify=body.verify)


@router.get("")
def list_adapters(request: Request, p: Principal = Depends(principal)) -> dict:
    c = ctx(request)
    with c.db.session() as s:
        rows = repo.list_adapters(s, organization_id=p.organization_id)
        return list_body([adapter_obj(r, endpoint=c.settings.url + "/v1") for r in rows], False)


@router.get("/{model}")
def get_adapter(request: Request, model: str, p: Principal = Depends(principal)) -> dict:
    c = ctx(request)
    with c.db.session() as s:
        row = repo.get_adapter(s, model=model, organization_id=p.organization_id)
        if row is None:
            raise not_found("deployed adapter", model, hint="See `tenfold adapters` for what is deployed.")
        return adapter_obj(row, endpoint=c.settings.url + "/v1")


@router.delete("/{model}")
def undeploy(request: Request, model: str, p: Principal = Depends(principal)) -> dict:
    return adapters.undeploy(ctx(request), p, model=model)
