"""The inference core shared by the HTTP routes and the batch runner: one request body → one engine
``GenerationRequest`` → one OpenAI response (or SSE chunks) and exactly one usage row.

Owns: validating a request body (``parse_body``), the spend-limit check, model routing and the context
budget, building the ``GenerationRequest`` (``prepare``: the whole validated body goes through this one
function, so new sampling fields are added in one place), the response and chunk shapes, and metering in
a ``finally`` (a client that disconnects mid-stream is still billed for what was generated), and the
count of interactive requests in flight (``traffic``) that the batch runner yields to.
Does not own: HTTP plumbing (``routes_inference``), batch bookkeeping (``tenfold.batch``), generation.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from pydantic import BaseModel, ValidationError

from tenfold.api.deps import Principal, ServerContext
from tenfold.api.errors import APIError, bad_request
from tenfold.api.inference_logprobs import chat_logprobs, completion_logprobs
from tenfold.billing import limits
from tenfold.billing.meter import UsageEntry
from tenfold.deployments import router as model_router
from tenfold.engine.types import EngineError, EngineOverloaded, GenerationRequest, SamplingParams
from tenfold.types.inference import ChatCompletionRequest, CompletionRequest

DEFAULT_MAX_TOKENS = 512
CHECKPOINT_HEADER = "X-Tenfold-Checkpoint"
ENDPOINTS = {"/v1/chat/completions": "chat", "/v1/completions": "text"}
_BODIES: dict[str, type[BaseModel]] = {"chat": ChatCompletionRequest, "text": CompletionRequest}


@dataclass
class Call:
    kind: str  # "chat" | "text"
    request_id: str
    model: str
    stream: bool
    include_usage: bool
    gen: GenerationRequest  # the first choice; ``gens`` holds all n (n > 1 samples several choices)
    route: model_router.Route
    batch_id: str | None = None
    started_at: float = field(default_factory=time.time)
    gens: list[GenerationRequest] = field(default_factory=list)
    logprobs: int | None = None  # top alternatives per token when logprobs were asked for

    def __post_init__(self) -> None:
        if not self.gens:
            self.gens = [self.gen]


def parse_body(kind: str, raw: object) -> ChatCompletionRequest | CompletionRequest:
    """Validate a JSON body the way the HTTP route does; raise a 400 ``APIError`` naming the field."""
    if not isinstance(raw, dict):
        raise bad_request("The request body must be a JSON object.")
    try:
        return _BODIES[kind].model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err.get("loc", ()))
        raise bad_request(f"Invalid request: {where}: {err.get('msg', 'invalid value')}" if where else
                          f"Invalid request: {err.get('msg', 'invalid value')}", param=where or None) from None


def _prompt_fn(kind: str, body):
    """How to turn the body into prompt token ids (given the engine), after checking what we cannot serve."""
    if kind == "chat":
        if body.tools:
            raise bad_request("Tool calling is not supported yet; send plain messages.", param="tools")
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                    for m in body.messages]
        return lambda engine: engine.chat_prompt(messages)
    prompt = body.prompt
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
        if len(prompt) != 1:
            raise bad_request("Only one prompt per request is supported; send several requests instead.",
                              param="prompt")
        prompt = prompt[0]
    if not prompt:
        raise bad_request("prompt must not be empty.", param="prompt")
    if isinstance(prompt, list):
        ids = list(prompt)
        return lambda engine: ids
    return lambda engine: engine.encode(prompt)


async def prepare(c: ServerContext, p: Principal, kind: str, body, *, expected_checkpoint: str | None = None,
                  request_id: str | None = None, priority: int = 0, batch_id: str | None = None) -> Call:
    prompt_ids_fn = _prompt_fn(kind, body)
    await asyncio.to_thread(limits.check_spend_limit, c.db, p.organization_id)  # database: off the event loop
    route = await asyncio.to_thread(model_router.resolve, c, p, body.model)
    model_router.check_expected_checkpoint(route, expected_checkpoint)
    engine = c.engine
    prompt_ids = prompt_ids_fn(engine)
    room = engine.max_context - len(prompt_ids)
    if room <= 0:
        raise bad_request(f"The prompt is {len(prompt_ids)} tokens, which fills the model's context of "
                          f"{engine.max_context} tokens. Shorten it.", param="messages", code="context_length_exceeded")
    max_tokens = getattr(body, "max_completion_tokens", None) or body.max_tokens
    if max_tokens is None:
        max_tokens = min(DEFAULT_MAX_TOKENS, room)
    elif max_tokens > room:
        raise bad_request(f"max_tokens={max_tokens} plus the {len(prompt_ids)}-token prompt exceeds the model's "
                          f"context of {engine.max_context} tokens; use max_tokens <= {room}.", param="max_tokens",
                          code="context_length_exceeded")
    prefix = "chatcmpl-" if kind == "chat" else "cmpl-"
    rid = request_id or prefix + uuid.uuid4().hex[:24]
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
                                      sampling=sampling, adapter=route.adapter, cache_salt=p.organization_id,
                                      priority=priority))
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return Call(kind, rid, body.model, body.stream, include_usage, gens[0], route, batch_id=batch_id, gens=gens,
                logprobs=logprobs)


class Traffic:
    """Interactive (priority 0) requests in flight on one server; the batch runner starts no new line while
    there are any, so batch work uses spare capacity even on an engine that ignores ``priority``."""

    def __init__(self) -> None:
        self.interactive = 0
        self.last_interactive = 0.0  # monotonic time an interactive request last started or ended

    def idle_for(self) -> float:
        """Seconds since the last interactive request (0 while any is in flight)."""
        return 0.0 if self.interactive > 0 else time.monotonic() - self.last_interactive


_TRAFFIC: dict[int, Traffic] = {}


def traffic(c: ServerContext) -> Traffic:
    return _TRAFFIC.setdefault(id(c), Traffic())


def _enter(c: ServerContext, call: Call) -> None:
    if call.gen.priority == 0:
        t = traffic(c)
        t.interactive += 1
        t.last_interactive = time.monotonic()


def _leave(c: ServerContext, call: Call) -> None:
    if call.gen.priority == 0:
        t = traffic(c)
        t.interactive -= 1
        t.last_interactive = time.monotonic()


@dataclass
class OpenStream:
    """SSE ``events`` plus ``finish``, the idempotent clean-up (close the engine stream, meter once) that
    also runs as the response's background task, so a stream the server never iterated is still billed."""

    events: AsyncIterator[str]
    finish: Callable[[], Awaitable[None]]


def usage_body(prompt: int, cached: int, completion: int) -> dict:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached}, "completion_tokens_details": None}


def headers(call: Call) -> dict[str, str]:
    return {CHECKPOINT_HEADER: call.route.checkpoint} if call.route.checkpoint else {}


class Tally:
    """Token counts of one request over its n choices: the prompt once, completion tokens summed."""

    def __init__(self, n: int = 1) -> None:
        self.prompt = self.cached = 0
        self.completions = [0] * n
        self.finishes: list[str | None] = [None] * n

    def add(self, d, index: int = 0) -> None:
        if d.prompt_tokens and (index == 0 or not self.prompt):
            self.prompt, self.cached = d.prompt_tokens, d.cached_tokens
        self.completions[index] = max(self.completions[index] + len(d.token_ids), d.completion_tokens)
        if d.finish_reason:
            self.finishes[index] = d.finish_reason

    @property
    def completion(self) -> int:
        return sum(self.completions)

    @property
    def finish(self) -> str | None:
        return self.finishes[0]


async def meter(c: ServerContext, p: Principal, call: Call, t: Tally) -> None:
    # Shielded: a client that disconnects cancels this task, but its usage row must still be written.
    await asyncio.shield(asyncio.to_thread(c.meter.record, UsageEntry(
        request_id=call.request_id, organization_id=p.organization_id, api_key_id=p.api_key_id,
        endpoint="chat.completions" if call.kind == "chat" else "completions", model=call.model,
        base_model=call.route.base_model, adapter_digest=call.route.adapter.digest if call.route.adapter else None,
        checkpoint=call.route.checkpoint, prompt_tokens=t.prompt or len(call.gen.prompt_token_ids),
        cached_tokens=t.cached, completion_tokens=t.completion, finish_reason=t.finish or "abort",
        deployment_id=getattr(call.route, "deployment_id", None), batch_id=call.batch_id,
        started_at=call.started_at)))


def _choice(call: Call, text: str, finish: str | None, *, delta: bool, first: bool = False, index: int = 0,
            logprobs: dict | None = None) -> dict:
    if call.kind == "chat":
        if delta:
            d = {"role": "assistant", "content": text} if first else ({"content": text} if text else {})
            return {"index": index, "delta": d, "finish_reason": finish, "logprobs": logprobs}
        return {"index": index, "message": {"role": "assistant", "content": text, "refusal": None},
                "finish_reason": finish, "logprobs": logprobs}
    return {"index": index, "text": text, "finish_reason": finish, "logprobs": logprobs}


class _Logprobs:
    """Shapes the engine's per-token logprobs for one choice (chat or legacy completions)."""

    def __init__(self, c: ServerContext, call: Call) -> None:
        self.kind, self.decode, self.offset = call.kind, c.engine.decode_token, 0

    def shape(self, entries) -> dict | None:
        if entries is None:
            return None
        if self.kind == "chat":
            return chat_logprobs(entries, self.decode)
        out = completion_logprobs(entries, self.decode, offset=self.offset)
        self.offset += sum(len(t) for t in out["tokens"])
        return out


async def _close(stream) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


def engine_error(e: EngineError) -> APIError:
    if isinstance(e, EngineOverloaded):
        return APIError(429, str(e), code="engine_overloaded",
                        headers={"Retry-After": str(max(1, math.ceil(e.retry_after)))})
    return bad_request(str(e))


def _start(c: ServerContext, call: Call) -> list:
    """Count the request as traffic and start one engine stream per choice; on failure, undo both."""
    _enter(c, call)
    streams = []
    try:
        for gen in call.gens:
            streams.append(c.engine.generate(gen))  # validates eagerly: bad requests raise here
    except BaseException as e:
        _leave(c, call)
        for s in streams:
            _close_soon(s)
        if isinstance(e, EngineError):
            raise engine_error(e) from None
        raise
    return streams


def _close_soon(stream) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        asyncio.ensure_future(aclose())


async def _merged(streams: list) -> AsyncIterator[tuple[int, object]]:
    """``(choice index, delta)`` from every choice's stream, in arrival order."""
    if len(streams) == 1:
        async for d in streams[0]:
            yield 0, d
        return
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(i: int, stream) -> None:
        try:
            async for d in stream:
                queue.put_nowait((i, d))
            queue.put_nowait((i, None))
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            queue.put_nowait((i, e))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        done = 0
        while done < len(streams):
            i, item = await queue.get()
            if item is None:
                done += 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield i, item
    finally:
        for t in tasks:
            t.cancel()


async def complete(c: ServerContext, p: Principal, call: Call) -> dict:
    """Run a request to the end and return the OpenAI response body; metered exactly once."""
    created = int(time.time())
    n = len(call.gens)
    tally = Tally(n)
    streams = _start(c, call)
    parts: list[list[str]] = [[] for _ in range(n)]
    entries: list[list] = [[] for _ in range(n)]
    try:
        async for i, d in _merged(streams):
            tally.add(d, i)
            parts[i].append(d.text)
            entries[i].extend(d.logprobs or ())
    except EngineError as e:
        raise engine_error(e) from None
    finally:
        _leave(c, call)
        for s in streams:
            await _close(s)
        await meter(c, p, call, tally)
    choices = []
    for i in range(n):
        lp = _Logprobs(c, call).shape(entries[i]) if call.logprobs is not None else None
        choices.append(_choice(call, "".join(parts[i]), tally.finishes[i], delta=False, index=i, logprobs=lp))
    return {"id": call.request_id, "object": "chat.completion" if call.kind == "chat" else "text_completion",
            "created": created, "model": call.model, "choices": choices,
            "usage": usage_body(tally.prompt, tally.cached, tally.completion), "system_fingerprint": None}


async def open_stream(c: ServerContext, p: Principal, call: Call) -> OpenStream:
    """Start a streaming request and return its SSE events. The first delta is pulled before returning,
    so an engine error is still a proper HTTP error; metered exactly once when the events end or are closed."""
    created = int(time.time())
    chunk_obj = "chat.completion.chunk" if call.kind == "chat" else "text_completion"
    n = len(call.gens)
    tally = Tally(n)
    shapers = [_Logprobs(c, call) for _ in range(n)]
    streams = _start(c, call)
    merged = _merged(streams)
    finished = False

    async def finish() -> None:
        nonlocal finished
        if finished:
            return
        finished = True
        _leave(c, call)
        try:
            await merged.aclose()
            for s in streams:
                await _close(s)
        finally:
            await meter(c, p, call, tally)

    try:
        first = await anext(merged, None)
    except EngineError as e:
        await finish()
        raise engine_error(e) from None
    except BaseException:
        await finish()
        raise

    def sse(payload: dict) -> str:
        return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"

    def chunk(text: str, finish: str | None, *, index: int = 0, is_first: bool = False, logprobs=None) -> str:
        out = {"id": call.request_id, "object": chunk_obj, "created": created, "model": call.model,
               "choices": [_choice(call, text, finish, delta=True, first=is_first, index=index, logprobs=logprobs)],
               "system_fingerprint": None}
        if call.include_usage:
            out["usage"] = None
        return sse(out)

    async def events() -> AsyncIterator[str]:
        try:
            if call.kind == "chat":
                for i in range(n):
                    yield chunk("", None, index=i, is_first=True)
            pending = [first] if first is not None else []
            while True:
                item = pending.pop() if pending else await anext(merged, None)
                if item is None:
                    break
                i, d = item
                tally.add(d, i)
                if d.text or d.finish_reason or d.logprobs:
                    lp = shapers[i].shape(d.logprobs) if call.logprobs is not None else None
                    yield chunk(d.text, d.finish_reason, index=i, logprobs=lp)
            if call.include_usage:
                yield sse({"id": call.request_id, "object": chunk_obj, "created": created, "model": call.model,
                           "choices": [], "usage": usage_body(tally.prompt, tally.cached, tally.completion)})
            yield "data: [DONE]\n\n"
        except EngineError as e:
            yield sse({"error": {"message": str(e), "type": "invalid_request_error", "param": None, "code": None}})
        finally:
            await finish()

    return OpenStream(events(), finish)
