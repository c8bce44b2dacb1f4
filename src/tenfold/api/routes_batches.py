"""``/v1/batches``: the OpenAI Batch API (create, list, retrieve, cancel)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from tenfold.api.contract import errors
from tenfold.api.deps import PageParams, ctx, list_body, page_params, principal
from tenfold.api.serialize import batch_obj
from tenfold.batch import service
from tenfold.context import Principal
from tenfold.store.tables import Batch
from tenfold.types.batches import Batch as BatchObject
from tenfold.types.batches import BatchCreate
from tenfold.types.common import ListResponse

router = APIRouter(prefix="/v1/batches")


def _objs(request: Request, rows: list[Batch]) -> list[dict]:
    usage = service.usage(ctx(request).db, batch_ids=[r.id for r in rows])
    return [batch_obj(r, usage.get(r.id)) for r in rows]


@router.post("", response_model=BatchObject, responses=errors(400, 401, 404))
def create(request: Request, body: BatchCreate, p: Principal = Depends(principal)) -> dict:
    row = service.create(ctx(request).db, organization_id=p.organization_id, api_key_id=p.api_key_id,
                         input_file_id=body.input_file_id, endpoint=body.endpoint,
                         completion_window=body.completion_window, metadata=body.metadata)
    return _objs(request, [row])[0]


@router.get("", response_model=ListResponse[BatchObject], responses=errors(400, 401))
def list_batches(request: Request, page: PageParams = Depends(page_params), p: Principal = Depends(principal)) -> dict:
    rows, more = service.list_batches(ctx(request).db, organization_id=p.organization_id, limit=page.limit,
                                      after=page.after)
    return list_body(_objs(request, rows), more)


@router.get("/{batch_id}", response_model=BatchObject, responses=errors(401, 404))
def retrieve(request: Request, batch_id: str, p: Principal = Depends(principal)) -> dict:
    return _objs(request, [service.get(ctx(request).db, organization_id=p.organization_id, batch_id=batch_id)])[0]


@router.post("/{batch_id}/cancel", response_model=BatchObject, responses=errors(401, 404, 409))
def cancel(request: Request, batch_id: str, p: Principal = Depends(principal)) -> dict:
    return _objs(request, [service.cancel(ctx(request).db, organization_id=p.organization_id, batch_id=batch_id)])[0]
