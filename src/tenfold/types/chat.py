"""Responses of ``POST /v1/chat/completions``: ``chat.completion`` and, when streaming,
``chat.completion.chunk``.

Owns: the completion, its choices and message (with ``tool_calls``), the chunk and its delta (with tool-call
pieces), and the chat logprobs shape
(``{"content": [{"token", "logprob", "bytes", "top_logprobs"}], "refusal"}``). Usage and finish reasons
come from ``tenfold.types.completions``. Does not own: the request body
(``tenfold.types.inference.ChatCompletionRequest``).
"""

from __future__ import annotations

from typing import Literal

from tenfold.types.common import ResponseModel
from tenfold.types.completions import CompletionUsage, FinishReason


class TopLogprob(ResponseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class ChatCompletionTokenLogprob(ResponseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(ResponseModel):
    content: list[ChatCompletionTokenLogprob] | None = None
    refusal: list[ChatCompletionTokenLogprob] | None = None


class Function(ResponseModel):
    name: str
    arguments: str  # a JSON object, as a string


class ChatCompletionMessageToolCall(ResponseModel):
    id: str
    type: Literal["function"] = "function"
    function: Function


class ChatCompletionMessage(ResponseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ChatCompletionMessageToolCall] | None = None


class Choice(ResponseModel):
    index: int
    message: ChatCompletionMessage
    finish_reason: FinishReason | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletion(ResponseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage | None = None
    system_fingerprint: str | None = None


class ChoiceDeltaToolCallFunction(ResponseModel):
    name: str | None = None
    arguments: str | None = None


class ChoiceDeltaToolCall(ResponseModel):
    """A piece of a streamed call: the first carries ``id``, ``type`` and the name; later ones more of the
    arguments, for the call at ``index``."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: ChoiceDeltaToolCallFunction | None = None


class ChoiceDelta(ResponseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ChoiceDeltaToolCall] | None = None


class ChunkChoice(ResponseModel):
    index: int
    delta: ChoiceDelta
    finish_reason: FinishReason | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(ResponseModel):
    """One streamed piece: a delta per choice; with ``stream_options.include_usage`` a last chunk with no
    choices carries ``usage``."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: CompletionUsage | None = None
    system_fingerprint: str | None = None


__all__ = ["ChatCompletion", "ChatCompletionMessage", "ChatCompletionMessageToolCall", "Function",
           "ChoiceDeltaToolCall", "ChoiceDeltaToolCallFunction", "Choice", "ChoiceLogprobs",
           "ChatCompletionTokenLogprob", "TopLogprob", "ChatCompletionChunk", "ChunkChoice", "ChoiceDelta"]
