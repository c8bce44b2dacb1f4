"""``/v1/usage``: the caller's organization's ledger. Without ``start_time``: the ledger rows, newest
first (paginated). With ``start_time``: aggregated into time buckets (``bucket_width`` ``1d`` or ``1h``),
grouped by any of model, adapter, checkpoint, api_key_id, deployment_id, usage_type, batch_id, base_model,
filtered by the same, with exact integer totals. ``/v1/usage/export``: the CSV of DESIGN §6, at most 31 days
per call. ``/v1/organizations/{id}/spend_limit``: the monthly spend limit (set by admins).
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict

from tenfold.api.deps import PageParams, Principal, ctx, list_body, page_params, principal
from tenfold.api.errors import APIError, bad_request, not_found
from tenfold.api.serialize import usage_obj
from tenfold.billing import export
from tenfold.billing.limits import month_bounds
from tenfold.billing.pricing import to_micro, usd
from tenfold.store import repo

router = APIRouter(prefix="/v1")
MAX_BUCKETS = 31 * 24
FILTERS = {"models": "model", "adapters": "adapter_digest", "checkpoints": "checkpoint", "api_key_ids": "api_key_id",
           "deployment_ids": "deployment_id", "usage_types": "usage_type", "batch_ids": "batch_id"}


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for item in (values or []) for v in item.split(",") if v.strip()]


def _range(start_time: str, end_time: str | None, *, max_seconds: int | None = None) -> tuple[float, float]:
    try:
        start = export.parse_time(start_time, "start_time")
        end = export.parse_time(end_time, "end_time") if end_time else time.time()
        export.check_range(start, end, max_seconds=max_seconds)
    except export.RangeError as e:
        raise bad_request(str(e), param="start_time", code="invalid_time_range") from None
    return start, end


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
        with c.db.session() as s:
            rows, more = repo.list_usage(s, organization_id=p.organization_id, limit=page.limit, after=page.after,
                                         model=model)
            return list_body([usage_obj(r) for r in rows], more)
    width = export.BUCKET_WIDTHS.get(bucket_width)
    if width is None:
        raise bad_request(f"bucket_width must be one of {', '.join(export.BUCKET_WIDTHS)}.", param="bucket_width")
    groups = _split(group_by)
    unknown = [g for g in groups if g not in export.GROUPS]
    if unknown:
        raise bad_request(f"Cannot group by {', '.join(unknown)}; use any of {', '.join(export.GROUPS)}.",
                          param="group_by")
    start, end = _range(start_time, end_time)
    if (end - start) / width > MAX_BUCKETS:
        raise bad_request(f"That range has more than {MAX_BUCKETS} buckets of {bucket_width}; use a shorter range or "
                          "bucket_width=1d.", param="end_time", code="invalid_time_range")
    given = dict(models=models, adapters=adapters, checkpoints=checkpoints, api_key_ids=api_key_ids,
                 deployment_ids=deployment_ids, usage_types=usage_types, batch_ids=batch_ids)
    filters = {FILTERS[k]: _split(v) for k, v in given.items() if v}
    if model:
        filters.setdefault("model", []).append(model)
    with c.db.session() as s:
        rows = repo.usage_in_range(s, organization_id=p.organization_id, start=start, end=end, **filters)
    return export.aggregate(rows, start=start, end=end, width=width, group_by=groups)


@router.get("/usage/export")
def usage_export(request: Request, start_time: str, end_time: str, p: Principal = Depends(principal)) -> Response:
    start, end = _range(start_time, end_time, max_seconds=export.MAX_EXPORT_SECONDS)
    with ctx(request).db.session() as s:
        rows = repo.usage_in_range(s, organization_id=p.organization_id, start=start, end=end)
    body = export.to_csv(rows, account=p.organization_id)
    name = f"usage_{int(start)}_{int(end)}.csv"
    return Response(body, media_type="text/csv", headers={"Content-Disposition": f'attachment; filename="{name}"'})


class SpendLimit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    monthly_spend_limit_usd: str | int | None  # a decimal string ("12.50") or null for no limit


def _limit_obj(s, organization_id: str) -> dict:
    org = repo.get_organization(s, organization_id=organization_id)
    start, _ = month_bounds(time.time())
    spent = repo.spend_since(s, organization_id=organization_id, since=start)
    limit = org.monthly_spend_limit_micro_usd
    return {"object": "organization.spend_limit", "organization_id": organization_id,
            "monthly_spend_limit_micro_usd": limit,
            "monthly_spend_limit_usd": usd(limit) if limit is not None else None,
            "spent_this_month_micro_usd": spent, "spent_this_month_usd": usd(spent)}


@router.get("/organizations/{organization_id}/spend_limit")
def get_spend_limit(request: Request, organization_id: str, p: Principal = Depends(principal)) -> dict:
    with ctx(request).db.session() as s:
        if (not p.is_admin and organization_id != p.organization_id) or \
                repo.get_organization(s, organization_id=organization_id) is None:
            raise not_found("organization", organization_id)
        return _limit_obj(s, organization_id)


@router.put("/organizations/{organization_id}/spend_limit")
def set_spend_limit(request: Request, organization_id: str, body: SpendLimit,
                    p: Principal = Depends(principal)) -> dict:
    if not p.is_admin:
        raise APIError(403, "Setting a spend limit needs an admin API key.", code="admin_required")
    limit = None
    if body.monthly_spend_limit_usd is not None:
        try:
            limit = to_micro(body.monthly_spend_limit_usd)
        except (ValueError, ArithmeticError):
            raise bad_request("monthly_spend_limit_usd must be a dollar amount such as \"12.50\" (at most six "
                              "decimal places) or null.", param="monthly_spend_limit_usd") from None
        if limit < 0:
            raise bad_request("monthly_spend_limit_usd must not be negative.", param="monthly_spend_limit_usd")
    with ctx(request).db.session() as s:
        if repo.set_spend_limit(s, organization_id=organization_id, limit_micro_usd=limit) is None:
            raise not_found("organization", organization_id)
        return _limit_obj(s, organization_id)
