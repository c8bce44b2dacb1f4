"""``/v1/batches``: the OpenAI Batch API (create, list, retrieve, cancel)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from tenfold.api.deps import PageParams, ctx, list_body, page_params, principal
from tenfold.api.serialize import batch_obj
from tenfold.batch import service
from tenfold.context import Principal
from tenfold.store.tables import Batch
from tenfold.types.fields import Metadata

router = APIRouter(prefix="/v1/batches")


class BatchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input_file_id: str = Field(min_length=1)
    endpoint: Literal["/v1/chat/completions", "/v1/completions"]
    completion_window: Literal["24h"]
    metadata: Metadata | None = None


def _objs(request: Request, rows: list[Batch]) -> list[dict]:
    usage = service.usage(ctx(request).db, batch_ids=[r.id for r in rows])
    return [batch_obj(r, usage.get(r.id)) for r in rows]


@router.post("")
def create(request: Request, body: BatchCreate, p: Principal = Depends(principal)) -> dict:
    row = service.create(ctx(request).db, organization_id=p.organization_id, api_key_id=p.api_key_id,
                         input_file_id=body.input_file_id, endpoint=body.endpoint,
                         completion_window=body.completion_window, metadata=body.metadata)
    return _objs(request, [row])[0]


@router.get("")
def list_batches(request: Request, page: PageParams = Depends(page_params), p: Principal = Depends(principal)) -> dict:
    rows, more = service.list_batches(ctx(request).db, organization_id=p.organization_id, limit=page.limit,
                                      after=page.after)
    return list_body(_objs(request, rows), more)


@router.get("/{batch_id}")
def retrieve(request: Request, batch_id: str, p: Principal = Depends(principal)) -> dict:
    return _objs(request, [service.get(ctx(request).db, organization_id=p.organization_id, batch_id=batch_id)])[0]


@router.post("/{batch_id}/cancel")
def cancel(request: Request, batch_id: str, p: Principal = Depends(principal)) -> dict:
    return _objs(request, [service.cancel(ctx(request).db, organization_id=p.organization_id, batch_id=batch_id)])[0]
