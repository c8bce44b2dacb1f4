"""Responses of ``/v1/usage`` and ``/v1/organizations/{id}/spend_limit``.

Owns: ``UsageRecord`` (one ledger row per request or training job), the aggregated ``UsageSummary``
(``object: "page"`` of time buckets, each with grouped ``results``, plus exact ``totals``) and
``SpendLimit``. Money is integer micro-dollars (``*_micro_usd``) with exact decimal strings beside it
(``*_usd``). Does not own: the CSV export (plain text) or pricing.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from tenfold.types.common import ResponseModel
from tenfold.types.completions import FinishReason
from tenfold.types.fields import Request


class UsageRecord(ResponseModel):
    object: Literal["usage.record"] = "usage.record"
    id: str
    created_at: int
    organization_id: str
    api_key_id: str
    request_id: str
    endpoint: str = Field(description="chat.completions, completions, fine_tuning.jobs or deployments")
    model: str
    base_model: str
    adapter: str | None = Field(default=None, description="content digest of the adapter that served")
    checkpoint: str | None = None
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    cost_micro_usd: int
    finish_reason: FinishReason | None = None
    usage_type: str = Field(description="TEXT_COMPLETION_INFERENCE_USAGE, BATCH_INFERENCE_USAGE, or deployment "
                                        "(replica-seconds of a dedicated deployment)")
    deployment_id: str | None = None
    batch_id: str | None = None
    discount_bps: int = 0
    accelerator_type: str | None = Field(default=None, description="deployment rows: the hardware profile")
    accelerator_seconds: float | None = Field(default=None, description="deployment rows: replica-seconds billed")


class UsageAmounts(ResponseModel):
    num_model_requests: int
    input_tokens: int
    input_cached_tokens: int
    output_tokens: int
    cost_micro_usd: int
    cost_usd: str = Field(description="cost_micro_usd as an exact decimal string")


class UsageResult(UsageAmounts):
    """One group of one bucket; the ``group_by`` keys asked for are present (null when unset in the row)."""

    object: Literal["usage.result"] = "usage.result"
    model: str | None = None
    adapter: str | None = None
    checkpoint: str | None = None
    api_key_id: str | None = None
    deployment_id: str | None = None
    usage_type: str | None = None
    batch_id: str | None = None
    base_model: str | None = None


class UsageBucket(ResponseModel):
    object: Literal["bucket"] = "bucket"
    start_time: int
    end_time: int
    results: list[UsageResult]


class UsageSummary(ResponseModel):
    """``GET /v1/usage?start_time=…``: every bucket of ``[start_time, end_time)``, in order."""

    object: Literal["page"] = "page"
    data: list[UsageBucket]
    has_more: bool = False
    next_page: str | None = None
    totals: UsageAmounts


class SpendLimit(ResponseModel):
    object: Literal["organization.spend_limit"] = "organization.spend_limit"
    organization_id: str
    monthly_spend_limit_micro_usd: int | None = None
    monthly_spend_limit_usd: str | None = Field(default=None, description="null: no limit")
    spent_this_month_micro_usd: int
    spent_this_month_usd: str


__all__ = ["UsageRecord", "UsageSummary", "UsageBucket", "UsageResult", "UsageAmounts", "SpendLimit"]


class SpendLimitUpdate(Request):
    monthly_spend_limit_usd: (Annotated[str, Field(pattern=r"^[0-9]{1,12}(\.[0-9]{1,6})?$")]
                              | Annotated[int, Field(ge=0, le=10**12)] | None) = Field(
        description="Dollars as a decimal string (\"12.50\", at most six decimal places) or an integer; null "
                    "removes the limit.")
