"""Request bodies of ``/v1/chat/completions`` and ``/v1/completions`` (OpenAI contracts).

Owns: field names, defaults and bounds. Nothing is silently ignored: unknown fields are refused
(``extra="forbid"``) except OpenAI's fields that need no server behaviour (``fields.OPENAI_PASSTHROUGH``);
OpenAI fields this server cannot honour yet (``logit_bias``, ``echo``, ``suffix``, ``best_of`` > 1) are refused
with a 400 that names them and says what works instead. ``response_format`` (text, JSON mode, JSON schema) is
honoured on chat and, as in vLLM, on completions.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from tenfold.types.fields import Metadata, Request, schema_only

NonEmpty = Annotated[str, Field(min_length=1)]
TokenId = Annotated[int, Field(ge=0, description="A token id of the model's vocabulary.")]


class TextPart(Request):
    type: Literal["text"]
    text: str


FunctionName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$",
                                    description="A function name: letters, digits, _ and -, at most 64.")]


class FunctionCall(Request):
    name: FunctionName
    arguments: str = Field(description="The arguments as a JSON object, in a string.")


class ToolCall(Request):
    id: str = Field(min_length=1, max_length=128)
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(Request):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    tool_calls: list[ToolCall] | None = Field(default=None, description="An assistant's calls (role assistant).")
    tool_call_id: str | None = Field(default=None, description="The call a tool message answers (role tool).")
    refusal: str | None = Field(default=None, description="Accepted on assistant messages as OpenAI returns them; "
                                                          "not rendered.")

    @model_validator(mode="after")
    def _roles(self):
        if self.tool_calls and self.role != "assistant":
            _refuse("tool_calls", "only assistant messages carry tool_calls")
        if self.role == "tool" and not self.tool_call_id:
            _refuse("tool_call_id", "a tool message needs the id of the call it answers")
        if self.tool_call_id is not None and self.role != "tool":
            _refuse("tool_call_id", "only tool messages carry tool_call_id")
        return self

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)


class FunctionDefinition(Request):
    name: FunctionName
    description: str | None = None
    parameters: dict[str, Any] | None = Field(default=None, description="A JSON Schema of the arguments object.")
    strict: bool | None = Field(default=None, description="Accepted either way: arguments are always decoded "
                                                          "under the parameters schema.")


class Tool(Request):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(Request):
    name: FunctionName


class NamedToolChoice(Request):
    type: Literal["function"]
    function: NamedFunction


class StreamOptions(Request):
    include_usage: bool = False


class ResponseFormatText(Request):
    type: Literal["text"]


class ResponseFormatJsonObject(Request):
    """JSON mode: the answer is one JSON object (any keys)."""

    type: Literal["json_object"]


class JsonSchemaSpec(Request):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="The schema's name (letters, digits, _ and -).")
    description: str | None = None
    schema_: dict[str, Any] = Field(alias="schema", description="A JSON Schema (draft 2020-12) the answer matches.")
    strict: bool | None = Field(default=None, description="Accepted either way: the answer is always decoded under "
                                                          "the schema, so it always validates (unless cut by "
                                                          "max_tokens: finish_reason length).")

    model_config = {**Request.model_config, "populate_by_name": True}


class ResponseFormatJsonSchema(Request):
    """Structured output: the answer is JSON that validates against ``json_schema.schema``."""

    type: Literal["json_schema"]
    json_schema: JsonSchemaSpec


def _format_type(data: Any) -> str | None:
    kind = data.get("type") if isinstance(data, dict) else getattr(data, "type", None)
    return f"type={kind}" if kind in ("text", "json_object", "json_schema") else None


# Tagged by ``type``; the tags ("type=…") stay out of error paths (``fields.field_path``).
ResponseFormat = Annotated[
    Annotated[ResponseFormatText, Tag("type=text")] | Annotated[ResponseFormatJsonObject, Tag("type=json_object")]
    | Annotated[ResponseFormatJsonSchema, Tag("type=json_schema")],
    Discriminator(_format_type, custom_error_type="invalid_response_format",
                  custom_error_message="type must be text, json_object or json_schema")]


def _refuse(field: str, message: str) -> None:
    raise ValueError(f"{field}: {message}")


class _SamplingFields(Request):
    model: str = Field(min_length=1, max_length=256, description="A base model, a job id (`ftjob-…`) or what "
                                                                  "GET /v1/models lists.")
    max_tokens: int | None = Field(default=None, ge=1, description="At most the model's context minus the prompt.")
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    stop: NonEmpty | Annotated[list[NonEmpty], Field(max_length=4)] | None = None
    seed: int | None = None
    n: int = Field(default=1, ge=1, le=16)
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    # Extensions (as in vLLM): top_k (0 or -1 = off), stop_token_ids, ignore_eos.
    top_k: int = Field(default=0, ge=-1)
    stop_token_ids: list[TokenId] | None = None
    ignore_eos: bool = False
    stream: bool = False
    stream_options: StreamOptions | None = Field(default=None, description="Only with stream: true.")
    response_format: ResponseFormat | None = Field(default=None, description=(
        "text (default), json_object (JSON mode) or json_schema (structured output); decoding is constrained, "
        "so the answer parses (and validates) unless max_tokens cuts it (finish_reason length)."))
    logit_bias: dict[str, float] | None = schema_only("Not supported yet: must be empty or absent.", maxProperties=0)
    # OpenAI fields that need no behaviour from this server (fields.OPENAI_PASSTHROUGH).
    user: str | None = None
    store: bool | None = None
    service_tier: str | None = None
    metadata: Metadata | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None

    @model_validator(mode="after")
    def _unsupported(self):
        if self.logit_bias:
            _refuse("logit_bias", "not supported yet; leave it out (use stop, stop_token_ids or sampling "
                                  "parameters instead)")
        if self.stream_options is not None and not self.stream:
            _refuse("stream_options", "applies only with stream: true; leave it out or set stream")
        if self.stop and self.structured():
            _refuse("stop", "cannot be combined with a JSON response_format: a stop string would cut the structured "
                            "answer (it ends by itself when the JSON is complete); leave stop out")
        return self

    def structured(self) -> bool:
        return self.response_format is not None and self.response_format.type != "text"

    def stop_list(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class ChatCompletionRequest(_SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1, description="Same as max_tokens (give one, or "
                                                                                "both equal).")
    tools: list[Tool] | None = Field(default=None, max_length=64, description="Functions the model may call.")
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = Field(
        default=None, description="none, auto (default with tools), required, or one named function.")
    parallel_tool_calls: bool | None = Field(default=None, description="Several calls in one answer (default "
                                                                       "true).")
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20, description="Only with logprobs: true.")

    @model_validator(mode="after")
    def _unsupported_chat(self):
        choice = self.tool_choice
        if choice not in (None, "none") and not self.tools:
            _refuse("tool_choice", "needs tools; send the functions in tools or leave tool_choice out")
        if isinstance(choice, NamedToolChoice) and choice.function.name not in {t.function.name for t in self.tools}:
            _refuse("tool_choice", f"names the function {choice.function.name!r}, which is not among tools "
                                   f"({', '.join(t.function.name for t in self.tools)})")
        if self.tools and len({t.function.name for t in self.tools}) != len(self.tools):
            _refuse("tools", "two tools have the same function name")
        if self.uses_tools() and self.structured():
            _refuse("response_format", "a JSON response_format cannot be combined with tools (the answer is either "
                                       "a call or text); use tool_choice none, or describe the JSON as a tool")
        if self.uses_tools() and self.stop:
            _refuse("stop", "cannot be combined with tools: a stop string would cut a call; leave stop out")
        if self.top_logprobs is not None and not self.logprobs:
            _refuse("top_logprobs", "needs logprobs: true")
        if None not in (self.max_tokens, self.max_completion_tokens) and self.max_tokens != self.max_completion_tokens:
            _refuse("max_completion_tokens", "differs from max_tokens; give one of them")
        return self

    def uses_tools(self) -> bool:
        """Whether the model may call the tools (tools given and tool_choice is not none)."""
        return bool(self.tools) and self.tool_choice != "none"

    def logprobs_count(self) -> int | None:
        """How many alternatives per token the engine reports: None when logprobs are off."""
        if not self.logprobs:
            return None
        return self.top_logprobs or 0


class CompletionRequest(_SamplingFields):
    prompt: (NonEmpty | Annotated[list[NonEmpty], Field(min_length=1, max_length=1)]
             | Annotated[list[TokenId], Field(min_length=1)]) = Field(
        description="The text, a list of exactly one text, or token ids (one prompt per request).")
    echo: bool = schema_only("Not supported yet: must be false or absent.", default=False, enum=[False])
    suffix: str | None = schema_only("Not supported: must be empty or absent.", maxLength=0)
    best_of: int | None = schema_only("Not supported above 1 (use n).", minimum=1, maximum=1)
    logprobs: int | None = Field(default=None, ge=0, le=20)

    @model_validator(mode="after")
    def _unsupported_text(self):
        if self.echo:
            _refuse("echo", "returning the prompt with the completion is not supported yet; leave echo false")
        if self.suffix:
            _refuse("suffix", "insertion (text after the completion) is not supported; leave suffix out")
        if self.best_of is not None and self.best_of != 1:
            _refuse("best_of", "not supported; use n to get several choices and pick on the client")
        return self

    def logprobs_count(self) -> int | None:
        return self.logprobs
