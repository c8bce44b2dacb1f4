"""``/v1/usage``: the caller's organization's ledger. Without ``start_time``: the ledger rows, newest
first (paginated). With ``start_time``: aggregated into time buckets (``bucket_width`` ``1d`` or ``1h``),
grouped by any of model, adapter, checkpoint, api_key_id, deployment_id, usage_type, batch_id, base_model,
filtered by the same, with exact integer totals. ``/v1/usage/export``: the CSV of DESIGN §6, at most 31 days
per call. ``/v1/organizations/{id}/spend_limit``: the monthly spend limit (set by admins).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from tenfold.api.contract import errors, text_body
from tenfold.api.deps import PageParams, ctx, list_body, page_params, principal
from tenfold.api.serialize import spend_limit_obj, usage_obj
from tenfold.billing import export, limits
from tenfold.billing import usage as usage_service
from tenfold.context import Principal
from tenfold.types.common import ListResponse
from tenfold.types.fields import hinted_pattern
from tenfold.types.usage import SpendLimit, SpendLimitUpdate, UsageRecord, UsageSummary

router = APIRouter(prefix="/v1")
# Unix seconds, or an ISO 8601 date or date-time (UTC unless it carries an offset).
TIME = hinted_pattern(
    r"^([0-9]{1,11}(\.[0-9]+)?|[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"([T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?)?)$",
    "must be Unix seconds or an ISO date such as 2025-01-31 (UTC)")
TIME_HELP = "Unix seconds or an ISO 8601 date/date-time, e.g. 2026-11-01 (UTC)."
_GROUP = "(" + "|".join(export.GROUPS) + ")"
GROUPS = hinted_pattern(f"^({_GROUP}(,{_GROUP})*)?$", "must be any of " + ", ".join(export.GROUPS)
                        + " (comma-separated or repeated)")


@router.get("/usage", response_model=ListResponse[UsageRecord] | UsageSummary, responses=errors(400, 401))
def usage(request: Request, model: str | None = None,
          start_time: str | None = Query(None, pattern=TIME, description=TIME_HELP + " Aggregates when given."),
          end_time: str | None = Query(None, pattern=TIME, description=TIME_HELP + " Default: now."),
          bucket_width: Literal["1h", "1d"] = "1d",
          group_by: list[Annotated[str, Query(pattern=GROUPS)]] | None = Query(
              None, description="Any of " + ", ".join(export.GROUPS) + " (repeated or comma-separated)."),
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


@router.get("/usage/export", response_class=Response,
            responses={**text_body("text/csv", "The ledger rows of the range as CSV (DESIGN §6 columns)."),
                       **errors(400, 401)})
def usage_export(request: Request, start_time: str = Query(pattern=TIME, description=TIME_HELP),
                 end_time: str = Query(pattern=TIME, description=TIME_HELP + " At most 31 days after start_time."),
                 p: Principal = Depends(principal)) -> Response:
    name, body = usage_service.export_csv(ctx(request), p, start_time=start_time, end_time=end_time)
    return Response(body, media_type="text/csv", headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/organizations/{organization_id}/spend_limit", response_model=SpendLimit, responses=errors(401, 404))
def get_spend_limit(request: Request, organization_id: str, p: Principal = Depends(principal)) -> dict:
    return spend_limit_obj(limits.get_limit(ctx(request).db, p, organization_id=organization_id))


@router.put("/organizations/{organization_id}/spend_limit", response_model=SpendLimit,
            responses=errors(400, 401, 403, 404))
def set_spend_limit(request: Request, organization_id: str, body: SpendLimitUpdate,
                    p: Principal = Depends(principal)) -> dict:
    return spend_limit_obj(limits.set_limit(ctx(request).db, p, organization_id=organization_id,
                                            usd_amount=body.monthly_spend_limit_usd))
