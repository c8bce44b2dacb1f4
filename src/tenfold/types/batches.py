"""Responses of ``/v1/batches`` (the OpenAI Batch contract) and the lines of a batch's result files.

Owns: ``Batch`` with its request counts, token usage and errors, the closed set of batch statuses, and
``BatchOutputLine`` (one line of the output or error file, joined to the input on ``custom_id``).
Does not own: the input file's lines (``tenfold.batch.validate``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tenfold.types.common import ResponseModel
from tenfold.types.fields import Metadata, Request

BatchStatus = Literal["validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling",
                      "cancelled"]
TERMINAL_BATCH_STATUSES: frozenset[str] = frozenset({"completed", "failed", "expired", "cancelled"})


class BatchRequestCounts(ResponseModel):
    total: int
    completed: int
    failed: int


class InputTokensDetails(ResponseModel):
    cached_tokens: int


class OutputTokensDetails(ResponseModel):
    reasoning_tokens: int


class BatchUsage(ResponseModel):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class BatchError(ResponseModel):
    code: str | None = None
    message: str | None = None
    param: str | None = None
    line: int | None = None


class BatchErrors(ResponseModel):
    object: Literal["list"] = "list"
    data: list[BatchError]


class Batch(ResponseModel):
    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    model: str | None = None
    errors: BatchErrors | None = None
    input_file_id: str
    completion_window: str
    status: BatchStatus
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: BatchRequestCounts
    usage: BatchUsage | None = None
    metadata: dict[str, str] | None = None

    @property
    def done(self) -> bool:
        """Whether the batch ended (completed, failed, expired or cancelled)."""
        return self.status in TERMINAL_BATCH_STATUSES


class BatchLineResponse(ResponseModel):
    status_code: int
    request_id: str
    body: dict[str, Any] = Field(description="the chat.completion or text_completion, or an error body")


class BatchLineError(ResponseModel):
    code: str | None = None
    message: str | None = None


class BatchOutputLine(ResponseModel):
    """One line of a batch's output or error file."""

    id: str
    custom_id: str
    response: BatchLineResponse | None = None
    error: BatchLineError | None = None


__all__ = ["Batch", "BatchStatus", "BatchRequestCounts", "BatchUsage", "InputTokensDetails",
           "OutputTokensDetails", "BatchError", "BatchErrors", "BatchOutputLine", "BatchLineResponse",
           "BatchLineError", "TERMINAL_BATCH_STATUSES"]


class BatchCreate(Request):
    input_file_id: str = Field(min_length=1, max_length=64, description="A file uploaded with purpose batch.")
    endpoint: Literal["/v1/chat/completions", "/v1/completions"]
    completion_window: Literal["24h"]
    metadata: Metadata | None = None
