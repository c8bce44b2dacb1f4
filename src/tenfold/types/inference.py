"""Request bodies of ``/v1/chat/completions`` and ``/v1/completions`` (OpenAI contracts).

Owns: field names, defaults and bounds. Nothing is silently ignored: unknown fields are refused
(``extra="forbid"``) except OpenAI's fields that need no server behaviour (``fields.OPENAI_PASSTHROUGH``);
OpenAI fields this server cannot honour yet (tools, ``response_format`` other than text, ``logit_bias``,
``echo``, ``suffix``, ``best_of`` > 1) are refused with a 400 that names them and says what works instead.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tenfold.types.fields import Metadata


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="allow")  # json_schema's own fields; refused below unless type is text
    type: Literal["text", "json_object", "json_schema"]


def _refuse(field: str, message: str) -> None:
    raise ValueError(f"{field}: {message}")


class _SamplingFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = Field(default=1, ge=1, le=16)
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    # Extensions (as in vLLM): top_k (0 or -1 = off), stop_token_ids, ignore_eos.
    top_k: int = Field(default=0, ge=-1)
    stop_token_ids: list[int] | None = None
    ignore_eos: bool = False
    stream: bool = False
    stream_options: StreamOptions | None = None
    logit_bias: dict[str, float] | None = None  # refused unless empty (not supported yet)
    # OpenAI fields that need no behaviour from this server (fields.OPENAI_PASSTHROUGH).
    user: str | None = None
    store: bool | None = None
    service_tier: str | None = None
    metadata: Metadata | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None

    @field_validator("stop")
    @classmethod
    def _stop(cls, v: str | list[str] | None) -> str | list[str] | None:
        items = [v] if isinstance(v, str) else (v or [])
        if len(items) > 4:
            raise ValueError("at most 4 stop sequences are allowed")
        if any(not s for s in items):
            raise ValueError("stop sequences must be non-empty strings")
        return v

    @model_validator(mode="after")
    def _unsupported(self):
        if self.logit_bias:
            _refuse("logit_bias", "not supported yet; leave it out (use stop, stop_token_ids or sampling "
                                  "parameters instead)")
        return self

    def stop_list(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class ChatCompletionRequest(_SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    response_format: ResponseFormat | None = None  # only {"type": "text"} for now
    tools: list[dict[str, Any]] | None = None  # refused: tool calling is not supported yet
    tool_choice: str | dict[str, Any] | None = None  # only "none"
    parallel_tool_calls: bool | None = None  # refused (needs tools)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)

    @model_validator(mode="after")
    def _unsupported_chat(self):
        if self.response_format is not None and self.response_format.type != "text":
            _refuse("response_format", f"type '{self.response_format.type}' is not supported yet; only "
                                       "{\"type\": \"text\"}. Describe the format in the prompt instead")
        if self.tools:
            _refuse("tools", "tool calling is not supported yet; send plain messages")
        if self.tool_choice is not None and self.tool_choice != "none":
            _refuse("tool_choice", "tool calling is not supported yet; only \"none\" is accepted")
        if self.parallel_tool_calls is not None:
            _refuse("parallel_tool_calls", "applies only with tools, which are not supported yet; leave it out")
        return self

    def logprobs_count(self) -> int | None:
        """How many alternatives per token the engine reports: None when logprobs are off."""
        if not self.logprobs:
            return None
        return self.top_logprobs or 0


class CompletionRequest(_SamplingFields):
    prompt: str | list[str] | list[int]
    echo: bool = False  # refused when true (not supported yet)
    suffix: str | None = None  # refused (no insertion support)
    best_of: int | None = Field(default=None, ge=1)  # refused above 1: use n
    logprobs: int | None = Field(default=None, ge=0, le=20)

    @model_validator(mode="after")
    def _unsupported_text(self):
        if self.echo:
            _refuse("echo", "returning the prompt with the completion is not supported yet; leave echo false")
        if self.suffix:
            _refuse("suffix", "insertion (text after the completion) is not supported; leave suffix out")
        if self.best_of is not None and self.best_of > 1:
            _refuse("best_of", "not supported; use n to get several choices and pick on the client")
        return self

    def logprobs_count(self) -> int | None:
        return self.logprobs
