"""The caller's usage as the API serves it: ledger rows, aggregated buckets, and the CSV export.

Owns: checking the query (bucket width, groups, the range and how many buckets it makes, the export's
31-day limit) and reading the organization's rows for it. Does not own: parsing times and aggregating
(``export``) or wire shapes.
"""

from __future__ import annotations

import time

from tenfold.billing import export
from tenfold.context import Principal, ServerContext
from tenfold.errors import InvalidRequest
from tenfold.store import repo
from tenfold.store.tables import UsageRecord

MAX_BUCKETS = 31 * 24
# filter parameter → ledger column
FILTERS = {"models": "model", "adapters": "adapter_digest", "checkpoints": "checkpoint", "api_key_ids": "api_key_id",
           "deployment_ids": "deployment_id", "usage_types": "usage_type", "batch_ids": "batch_id"}


def _split(values: list[str] | None) -> list[str]:
    """Repeated and comma-separated values as one list (``?models=a,b&models=c``)."""
    return [v.strip() for item in (values or []) for v in item.split(",") if v.strip()]


def _range(start_time: str, end_time: str | None, *, max_seconds: int | None = None) -> tuple[float, float]:
    try:
        start = export.parse_time(start_time, "start_time")
        end = export.parse_time(end_time, "end_time") if end_time else time.time()
        export.check_range(start, end, max_seconds=max_seconds)
    except export.RangeError as e:
        raise InvalidRequest(str(e), param="start_time", code="invalid_time_range") from None
    return start, end


def records(c: ServerContext, p: Principal, *, limit: int, after: str | None, model: str | None
            ) -> tuple[list[UsageRecord], bool]:
    with c.db.session() as s:
        return repo.list_usage(s, organization_id=p.organization_id, limit=limit, after=after, model=model)


def summary(c: ServerContext, p: Principal, *, start_time: str, end_time: str | None, bucket_width: str,
            group_by: list[str] | None, model: str | None, filters: dict[str, list[str] | None]) -> dict:
    """Buckets of ``bucket_width`` over ``[start_time, end_time)``, grouped and filtered, with exact totals."""
    width = export.BUCKET_WIDTHS.get(bucket_width)
    if width is None:
        raise InvalidRequest(f"bucket_width must be one of {', '.join(export.BUCKET_WIDTHS)}.", param="bucket_width")
    groups = _split(group_by)
    unknown = [g for g in groups if g not in export.GROUPS]
    if unknown:
        raise InvalidRequest(f"Cannot group by {', '.join(unknown)}; use any of {', '.join(export.GROUPS)}.",
                             param="group_by")
    start, end = _range(start_time, end_time)
    if (end - start) / width > MAX_BUCKETS:
        raise InvalidRequest(f"That range has more than {MAX_BUCKETS} buckets of {bucket_width}; use a shorter range "
                             "or bucket_width=1d.", param="end_time", code="invalid_time_range")
    columns = {FILTERS[k]: _split(v) for k, v in filters.items() if v}
    if model:
        columns.setdefault("model", []).append(model)
    with c.db.session() as s:
        rows = repo.usage_in_range(s, organization_id=p.organization_id, start=start, end=end, **columns)
    return export.aggregate(rows, start=start, end=end, width=width, group_by=groups)


def export_csv(c: ServerContext, p: Principal, *, start_time: str, end_time: str) -> tuple[str, str]:
    """``(file name, CSV text)`` of the organization's rows in ``[start_time, end_time)`` (at most 31 days)."""
    start, end = _range(start_time, end_time, max_seconds=export.MAX_EXPORT_SECONDS)
    with c.db.session() as s:
        rows = repo.usage_in_range(s, organization_id=p.organization_id, start=start, end=end)
    return f"usage_{int(start)}_{int(end)}.csv", export.to_csv(rows, account=p.organization_id)
