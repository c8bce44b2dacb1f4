"""Responses of ``POST /v1/completions`` (``text_completion``, also each streamed chunk) and the usage
body every inference response carries.

Owns: ``Completion``, ``CompletionChoice``, the legacy ``CompletionLogprobs`` (``tokens``,
``token_logprobs``, ``top_logprobs``, ``text_offset``), ``CompletionUsage`` with
``prompt_tokens_details.cached_tokens`` (prefix-cache hits), and the closed set of finish reasons.
Does not own: the request body (``tenfold.types.inference.CompletionRequest``) or the chat shapes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tenfold.types.common import ResponseModel

FinishReason = Literal["stop", "length", "tool_calls", "abort", "error"]


class PromptTokensDetails(ResponseModel):
    cached_tokens: int = Field(default=0, description="prompt tokens served from the prefix cache")


class CompletionTokensDetails(ResponseModel):
    reasoning_tokens: int | None = None


class CompletionUsage(ResponseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None

    @property
    def cached_tokens(self) -> int:
        """``prompt_tokens_details.cached_tokens`` (0 when absent)."""
        return self.prompt_tokens_details.cached_tokens if self.prompt_tokens_details else 0


class CompletionLogprobs(ResponseModel):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]


class CompletionChoice(ResponseModel):
    index: int
    text: str
    finish_reason: FinishReason | None = None
    logprobs: CompletionLogprobs | None = None


class Completion(ResponseModel):
    """A text completion; streamed chunks have the same shape (one choice each, usage last when asked)."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: CompletionUsage | None = None
    system_fingerprint: str | None = None


__all__ = ["Completion", "CompletionChoice", "CompletionLogprobs", "CompletionUsage", "PromptTokensDetails",
           "CompletionTokensDetails", "FinishReason"]
