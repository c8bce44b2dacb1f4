"""``client.usage``: the caller's organization's ledger (``/v1/usage``, ``/v1/usage/export``).

Owns: ``list`` (the per-request rows, newest first), ``summary`` (buckets of ``1d`` or ``1h`` with grouped
results and exact integer totals; ``group_by`` and the filters are lists of values) and ``export`` (the
billing CSV of ``[start_time, end_time)``, at most 31 days). Times are Unix seconds or ISO dates (UTC).
Does not own: spend limits (``client.organizations.spend_limit``).
"""

from __future__ import annotations

from collections.abc import Sequence

from tenfold.sdk._request import Resource
from tenfold.types.common import ListResponse
from tenfold.types.usage import UsageRecord, UsageSummary

Time = str | int | float


def _csv(values: Sequence[str] | None) -> str | None:
    return ",".join(values) if values else None


class Usage(Resource):
    def list(self, *, limit: int | None = None, after: str | None = None, model: str | None = None,
             timeout_seconds: float | None = None) -> ListResponse[UsageRecord]:
        """One page of usage records (one per request or training job), newest first."""
        return self._call("GET", "/usage", ListResponse[UsageRecord], timeout_seconds=timeout_seconds,
                          params={"limit": limit, "after": after, "model": model})

    def summary(self, start_time: Time, end_time: Time | None = None, *, bucket_width: str | None = None,
                group_by: Sequence[str] | None = None, models: Sequence[str] | None = None,
                adapters: Sequence[str] | None = None, checkpoints: Sequence[str] | None = None,
                api_key_ids: Sequence[str] | None = None, deployment_ids: Sequence[str] | None = None,
                usage_types: Sequence[str] | None = None, batch_ids: Sequence[str] | None = None,
                timeout_seconds: float | None = None) -> UsageSummary:
        """Usage of ``[start_time, end_time)`` (end: now) in buckets (``bucket_width`` "1d" or "1h"), grouped
        by any of model, adapter, checkpoint, api_key_id, deployment_id, usage_type, batch_id, base_model."""
        params = {"start_time": start_time, "end_time": end_time, "bucket_width": bucket_width,
                  "group_by": _csv(group_by), "models": _csv(models), "adapters": _csv(adapters),
                  "checkpoints": _csv(checkpoints), "api_key_ids": _csv(api_key_ids),
                  "deployment_ids": _csv(deployment_ids), "usage_types": _csv(usage_types),
                  "batch_ids": _csv(batch_ids)}
        return self._call("GET", "/usage", UsageSummary, params=params, timeout_seconds=timeout_seconds)

    def export(self, start_time: Time, end_time: Time, *, timeout_seconds: float | None = None) -> str:
        """The billing CSV (one row per request, DESIGN §6 columns) of ``[start_time, end_time)``."""
        return self._call("GET", "/usage/export", str, params={"start_time": start_time, "end_time": end_time},
                          timeout_seconds=timeout_seconds)


__all__ = ["Usage"]
