"""Reading the ledger: time ranges, aggregation into buckets (``GET /v1/usage``) and the CSV export
(``GET /v1/usage/export``, ``tenfold usage export``).

Owns: parsing times (Unix seconds or ISO dates/datetimes, UTC), the half-open ``[start, end)`` range rule
(so the export of a range is exactly the union of the exports of its sub-ranges), the 31-day limit per
export, grouping keys, and the CSV columns of DESIGN §6. Sums are integer micro-dollars computed from the
rows themselves, so totals equal the sum of the rows exactly. Does not own: writing rows (``meter``).
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timezone

from tenfold.billing.pricing import usd

DAY = 86_400
MAX_EXPORT_SECONDS = 31 * DAY
BUCKET_WIDTHS = {"1h": 3600, "1d": DAY}
# group_by name → ledger column
GROUPS = {"model": "model", "adapter": "adapter_digest", "checkpoint": "checkpoint", "api_key_id": "api_key_id",
          "deployment_id": "deployment_id", "usage_type": "usage_type", "batch_id": "batch_id",
          "base_model": "base_model"}
CSV_COLUMNS = ("email", "start_time", "end_time", "usage_type", "accelerator_type", "accelerator_seconds",
               "base_model_name", "model_bucket", "parameter_count", "prompt_tokens", "completion_tokens",
               "cached_prompt_tokens", "cost_usd")


class RangeError(ValueError):
    """A bad time or range; the message says what to send instead."""


def parse_time(value: str | int | float, name: str) -> float:
    """Unix seconds (``1735689600``) or an ISO date/datetime (``2025-01-01``, ``2025-01-01T12:00:00``);
    times without a zone are UTC."""
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        d = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" UTC", "+00:00"))
    except ValueError:
        raise RangeError(f"{name}={text!r} is not a time: use Unix seconds or an ISO date such as 2025-01-31 "
                         "(UTC)") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc)
    return d.timestamp()


def check_range(start: float, end: float, *, max_seconds: int | None = None) -> None:
    if end <= start:
        raise RangeError("end_time must be after start_time (the range is [start_time, end_time)).")
    if max_seconds is not None and end - start > max_seconds:
        days = (end - start) / DAY
        raise RangeError(f"The range is {days:.1f} days; one export covers at most {max_seconds // DAY} days. Split "
                         "it into chunks of 31 days or less (the exports of adjacent ranges never overlap).")


def _stamp(t: float | None) -> str:
    if t is None:
        return ""
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def aggregate(rows: list, *, start: float, end: float, width: int, group_by: list[str]) -> dict:
    """Rows (``repo.usage_in_range``) → an OpenAI-style page of buckets plus ``totals``."""
    n_buckets = max(1, -(-int(end - start) // width))
    buckets: list[dict[tuple, dict]] = [{} for _ in range(n_buckets)]
    totals = _zero()
    for r in rows:
        i = min(int((r.created_at - start) // width), n_buckets - 1)
        key = tuple(getattr(r, GROUPS[g]) for g in group_by)
        acc = buckets[i].setdefault(key, _zero())
        for a in (acc, totals):
            a["num_model_requests"] += 1
            a["input_tokens"] += r.prompt_tokens
            a["input_cached_tokens"] += r.cached_tokens
            a["output_tokens"] += r.completion_tokens
            a["cost_micro_usd"] += r.cost_micro_usd
    data = []
    for i, groups in enumerate(buckets):
        b_start = start + i * width
        results = []
        for key, acc in sorted(groups.items(), key=lambda kv: tuple("" if v is None else str(v) for v in kv[0])):
            res = {"object": "usage.result", **{g: key[j] for j, g in enumerate(group_by)}, **acc}
            res["cost_usd"] = usd(acc["cost_micro_usd"])
            results.append(res)
        data.append({"object": "bucket", "start_time": int(b_start), "end_time": int(min(b_start + width, end)),
                     "results": results})
    totals["cost_usd"] = usd(totals["cost_micro_usd"])
    return {"object": "page", "data": data, "has_more": False, "next_page": None, "totals": totals}


def _zero() -> dict:
    return {"num_model_requests": 0, "input_tokens": 0, "input_cached_tokens": 0, "output_tokens": 0,
            "cost_micro_usd": 0}


def to_csv(rows: list, *, account: str, parameter_counts: dict[str, int] | None = None) -> str:
    """One CSV line per request, oldest first, with the DESIGN §6 columns. ``account`` fills ``email``
    (tenfold has organizations, not user emails: the organization id)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    counts = parameter_counts or {}
    for r in rows:
        w.writerow([account, _stamp(r.started_at if r.started_at is not None else r.created_at), _stamp(r.created_at),
                    r.usage_type, getattr(r, "accelerator_type", None) or "",
                    _seconds(getattr(r, "accelerator_seconds", None)), r.base_model, r.model,
                    counts.get(r.base_model, ""), r.prompt_tokens,
                    r.completion_tokens, r.cached_tokens, usd(r.cost_micro_usd)])
    return buf.getvalue()


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:g}"
