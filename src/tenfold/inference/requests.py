"""Building engine requests: one validated request body → one ``Call`` holding n ``GenerationRequest``s.

Owns: validating a raw body the way the HTTP routes do (``parse_body``, used by batch lines), the endpoint
table, the spend-limit check, model routing, the context budget and ``max_tokens`` default, and turning
every sampling field into ``SamplingParams`` and ``response_format`` into a checked ``Constraint``
(``prepare``: the whole validated body goes through this one function, so a new field is added in one
place). Does not own: running the call (``streams``),
response shapes (``responses``) or HTTP.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import BaseModel, ValidationError

from tenfold.billing import limits
from tenfold.context import Principal, ServerContext
from tenfold.deployments import router as model_router
from tenfold.engine.types import Engine, GenerationRequest, SamplingParams
from tenfold.errors import InvalidRequest
from tenfold.inference import structured, tools
from tenfold.inference.prompts import Prompter
from tenfold.inference.routing import engine_for, prompter_for
from tenfold.types.fields import describe
from tenfold.types.inference import ChatCompletionRequest, CompletionRequest

DEFAULT_MAX_TOKENS = 512
ENDPOINTS = {"/v1/chat/completions": "chat", "/v1/completions": "text"}
_BODIES: dict[str, type[BaseModel]] = {"chat": ChatCompletionRequest, "text": CompletionRequest}


@dataclass
class Call:
    kind: str  # "chat" | "text"
    request_id: str
    model: str
    stream: bool
    include_usage: bool
    gens: list[GenerationRequest]  # one per choice (n > 1 samples several)
    route: model_router.Route
    engine: Engine
    batch_id: str | None = None
    started_at: float = field(default_factory=time.time)
    logprobs: int | None = None  # top alternatives per token when logprobs were asked for
    tools: tools.ToolPlan | None = None  # the model may answer with tool calls

    @property
    def gen(self) -> GenerationRequest:
        return self.gens[0]

    @property
    def interactive(self) -> bool:
        return self.gen.priority == 0


def parse_body(kind: str, raw: object) -> ChatCompletionRequest | CompletionRequest:
    """Validate a JSON body as the HTTP route does; ``InvalidRequest`` naming the field."""
    if not isinstance(raw, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    try:
        return _BODIES[kind].model_validate(raw)
    except ValidationError as e:
        message, param = describe(list(e.errors()))
        raise InvalidRequest(message, param=param) from None


def _prompt_fn(kind: str, body) -> Callable[[Prompter], list[int]]:
    """How to turn the body into prompt token ids, after checking what cannot be served."""
    if kind == "chat":
        messages = [m.model_dump(include={"role", "tool_calls", "tool_call_id"}, exclude_none=True)
                    | {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                    for m in body.messages]
        # Tools are in the prompt whenever given (also with tool_choice none, as vLLM does): the prompt then does
        # not change when a conversation switches tool_choice, and its prefix stays cached.
        tool_list = [t.model_dump(exclude_none=True) for t in body.tools] if body.tools else None
        return lambda prompter: prompter.chat_prompt(messages, tools=tool_list)
    prompt = body.prompt
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
        if len(prompt) != 1:
            raise InvalidRequest("Only one prompt per request is supported; send several requests instead.",
                                 param="prompt")
        prompt = prompt[0]
    if not prompt:
        raise InvalidRequest("prompt must not be empty.", param="prompt")
    if isinstance(prompt, list):
        ids = list(prompt)
        return lambda prompter: ids
    return lambda prompter: prompter.encode(prompt)


def _max_tokens(body, prompt_len: int, max_context: int) -> int:
    room = max_context - prompt_len
    if room <= 0:
        raise InvalidRequest(f"The prompt is {prompt_len} tokens, which fills the model's context of {max_context} "
                             "tokens. Shorten it.", param="messages", code="context_length_exceeded")
    wanted = getattr(body, "max_completion_tokens", None) or body.max_tokens
    if wanted is None:
        return min(DEFAULT_MAX_TOKENS, room)
    if wanted > room:
        raise InvalidRequest(f"max_tokens={wanted} plus the {prompt_len}-token prompt exceeds the model's context "
                             f"of {max_context} tokens; use max_tokens <= {room}.", param="max_tokens",
                             code="context_length_exceeded")
    return wanted


async def prepare(c: ServerContext, p: Principal, kind: str, body, *, expected_checkpoint: str | None = None,
                  request_id: str | None = None, priority: int = 0, batch_id: str | None = None,
                  session_key: str | None = None) -> Call:
    """``session_key`` (default: the body's ``user``) keeps a conversation on one replica of a deployment."""
    prompt_ids_fn = _prompt_fn(kind, body)
    plan = tools.plan_for(body) if kind == "chat" else None
    constraint = plan.constraint() if plan is not None else structured.constraint_for(body)
    await asyncio.to_thread(limits.check_spend_limit, c.db, p.organization_id)  # database: off the event loop
    route = await asyncio.to_thread(model_router.resolve, c, p, body.model)
    model_router.check_expected_checkpoint(route, expected_checkpoint)
    prompter = prompter_for(c, route, load=False) or await asyncio.to_thread(prompter_for, c, route)
    if constraint is not None:
        await structured.compile_checked(prompter, constraint,
                                         param="tools" if plan is not None else structured.param_of(body))
    prompt_ids = prompt_ids_fn(prompter)
    engine = await engine_for(c, route, session_key=session_key or body.user)
    max_tokens = _max_tokens(body, len(prompt_ids), engine.max_context)
    rid = request_id or ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex[:24]
    logprobs = body.logprobs_count()
    gens = []
    for i in range(body.n):  # choice i samples with seed + i, so a seeded request with n > 1 is reproducible
        sampling = SamplingParams(
            max_tokens=max_tokens, temperature=body.temperature, top_p=body.top_p,
            seed=None if body.seed is None else body.seed + i, stop=body.stop_list(), top_k=body.top_k,
            stop_token_ids=tuple(body.stop_token_ids or ()), logprobs=logprobs,
            presence_penalty=body.presence_penalty, frequency_penalty=body.frequency_penalty,
            ignore_eos=body.ignore_eos)
        gens.append(GenerationRequest(request_id=rid if i == 0 else f"{rid}-{i}", prompt_token_ids=prompt_ids,
                                      sampling=sampling, adapter=route.adapter, organization=p.organization_id,
                                      priority=priority, constraint=constraint))
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return Call(kind, rid, body.model, body.stream, include_usage, gens, route, engine, batch_id=batch_id,
                logprobs=logprobs, tools=plan)
