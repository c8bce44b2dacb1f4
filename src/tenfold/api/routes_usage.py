"""``/v1/usage``: the caller's organization's ledger. Without ``start_time``: the ledger rows, newest
first (paginated). With ``start_time``: aggregated into time buckets (``bucket_width`` ``1d`` or ``1h``),
grouped by any of model, adapter, checkpoint, api_key_id, deployment_id, usage_type, batch_id, base_model,
filtered by the same, with exact integer totals. ``/v1/usage/export``: the CSV of DESIGN §6, at most 31 days
per call. ``/v1/organizations/{id}/spend_limit``: the monthly spend limit (set by admins).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict

from tenfold.api.deps import PageParams, ctx, list_body, page_params, principal
from tenfold.api.serialize import spend_limit_obj, usage_obj
from tenfold.billing import limits
from tenfold.billing import usage as usage_service
from tenfold.context import Principal

router = APIRouter(prefix="/v1")


@router.get("/usage")
def usage(request: Request, model: str | None = None, start_time: str | None = None, end_time: str | None = None,
          bucket_width: str = "1d", group_by: list[str] | None = Query(None),
          models: list[str] | None = Query(None), adapters: list[str] | None = Query(None),
          checkpoints: list[str] | None = Query(None), api_key_ids: list[str] | None = Query(None),
          deployment_ids: list[str] | None = Query(None), usage_types: list[str] | None = Query(None),
          batch_ids: list[str] | None = Query(None),
          page: PageParams = Depends(page_params), p: Principal = Depends(principal)) -> dict:
    c = ctx(request)
    if start_time is None:
        rows, more = usage_service.records(c, p, limit=page.limit, after=page.after, model=model)
        return list_body([usage_obj(r) for r in rows], more)
    filters = dict(models=models, adapters=adapters, checkpoints=checkpoints, api_key_ids=api_key_ids,
                   deployment_ids=deployment_ids, usage_types=usage_types, batch_ids=batch_ids)
    return usage_service.summary(c, p, start_time=start_time, end_time=end_time, bucket_width=bucket_width,
                                 group_by=group_by, model=model, filters=filters)


@router.get("/usage/export")
def usage_export(request: Request, start_time: str, end_time: str, p: Principal = Depends(principal)) -> Response:
    name, body = usage_service.export_csv(ctx(request), p, start_time=start_time, end_time=end_time)
    return Response(body, media_type="text/csv", headers={"Content-Disposition": f'attachment; filename="{name}"'})


class SpendLimitUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    monthly_spend_limit_usd: str | int | None  # a decimal string ("12.50") or null for no limit


@router.get("/organizations/{organization_id}/spend_limit")
def get_spend_limit(request: Request, organization_id: str, p: Principal = Depends(principal)) -> dict:
    return spend_limit_obj(limits.get_limit(ctx(request).db, p, organization_id=organization_id))


@router.put("/organizations/{organization_id}/spend_limit")
def set_spend_limit(request: Request, organization_id: str, body: SpendLimitUpdate,
                    p: Principal = Depends(principal)) -> dict:
    return spend_limit_obj(limits.set_limit(ctx(request).db, p, organization_id=organization_id,
                                            usd_amount=body.monthly_spend_limit_usd))
