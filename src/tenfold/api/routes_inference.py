"""``POST /v1/chat/completions`` and ``POST /v1/completions``: OpenAI contracts, streaming (SSE) or not.

Owns: parsing the request into an engine ``GenerationRequest``, the checkpoint headers, the response and
chunk shapes, and metering exactly once per request (in a ``finally``, so a client that disconnects
mid-stream is still billed for what was generated).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse

from tenfold.api.deps import Principal, ServerContext, ctx, principal
from tenfold.api.errors import bad_request
from tenfold.billing.meter import UsageEntry
from tenfold.deployments import router as model_router
from tenfold.engine.types import EngineError, GenerationRequest, SamplingParams
from tenfold.types.inference import ChatCompletionRequest, CompletionRequest

router = APIRouter(prefix="/v1")
DEFAULT_MAX_TOKENS = 512
CHECKPOINT_HEADER = "X-Tenfold-Checkpoint"
EXPECTED_HEADER = "x-tenfold-expected-checkpoint"


@dataclass
class Call:
    kind: str  # "chat" | "text"
    request_id: str
    model: str
    stream: bool
    include_usage: bool
    gen: GenerationRequest
    route: model_router.Route


async def _prepare(request: Request, p: Principal, body, prompt_ids_fn, kind: str) -> Call:
    c: ServerContext = ctx(request)
    if body.n != 1:
        raise bad_request("Only n=1 is supported; send several requests instead.", param="n")
    route = await asyncio.to_thread(model_router.resolve, c, p, body.model)  # database: off the event loop
    model_router.check_expected_checkpoint(route, request.headers.get(EXPECTED_HEADER))
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
    rid = prefix + uuid.uuid4().hex[:24]
    sampling = SamplingParams(max_tokens=max_tokens, temperature=body.temperature, top_p=body.top_p,
                              seed=body.seed, stop=body.stop_list())
    gen = GenerationRequest(request_id=rid, prompt_token_ids=prompt_ids, sampling=sampling, adapter=route.adapter,
                            cache_salt=p.organization_id)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return Call(kind, rid, body.model, body.stream, include_usage, gen, route)


def _usage(prompt: int, cached: int, completion: int) -> dict:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached}, "completion_tokens_details": None}


def _headers(call: Call) -> dict[str, str]:
    return {CHECKPOINT_HEADER: call.route.checkpoint} if call.route.checkpoint else {}


class _Tally:
    def __init__(self) -> None:
        self.prompt = self.cached = self.completion = 0
        self.finish: str | None = None

    def add(self, d) -> None:
        if d.prompt_tokens:
            self.prompt, self.cached = d.prompt_tokens, d.cached_tokens
        self.completion = max(self.completion + len(d.token_ids), d.completion_tokens)
        if d.finish_reason:
            self.finish = d.finish_reason


async def _meter(request: Request, p: Principal, call: Call, t: _Tally) -> None:
    c = ctx(request)
    # Shielded: a client that disconnects cancels this task, but its usage row must still be written.
    await asyncio.shield(asyncio.to_thread(c.meter.record, UsageEntry(
        request_id=call.request_id, organization_id=p.organization_id, api_key_id=p.api_key_id,
        endpoint="chat.completions" if call.kind == "chat" else "completions", model=call.model,
        base_model=call.route.base_model, adapter_digest=call.route.adapter.digest if call.route.adapter else None,
        checkpoint=call.route.checkpoint, prompt_tokens=t.prompt or len(call.gen.prompt_token_ids),
        cached_tokens=t.cached, completion_tokens=t.completion, finish_reason=t.finish or "abort")))


def _choice(call: Call, text: str, finish: str | None, *, delta: bool, first: bool = False) -> dict:
    if call.kind == "chat":
        if delta:
            d = {"role": "assistant", "content": text} if first else ({"content": text} if text else {})
            return {"index": 0, "delta": d, "finish_reason": finish, "logprobs": None}
        return {"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                "finish_reason": finish, "logprobs": None}
    return {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}


async def _close(stream) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


async def _run(request: Request, p: Principal, call: Call):
    engine = ctx(request).engine
    created = int(time.time())
    obj = "chat.completion" if call.kind == "chat" else "text_completion"
    chunk_obj = "chat.completion.chunk" if call.kind == "chat" else "text_completion"
    tally = _Tally()
    try:
        stream = engine.generate(call.gen)  # validates eagerly: bad requests raise here
    except EngineError as e:
        raise bad_request(str(e)) from None
    if not call.stream:
        parts: list[str] = []
        try:
            async for d in stream:
                tally.add(d)
                parts.append(d.text)
        except EngineError as e:
            raise bad_request(str(e)) from None
        finally:
            await _close(stream)
            await _meter(request, p, call, tally)
        body = {"id": call.request_id, "object": obj, "created": created, "model": call.model,
                "choices": [_choice(call, "".join(parts), tally.finish, delta=False)],
                "usage": _usage(tally.prompt, tally.cached, tally.completion), "system_fingerprint": None}
        return JSONResponse(body, headers=_headers(call))

    # Pull the first delta before answering, so an engine error is still a proper HTTP error.
    try:
        first = await anext(stream, None)
    except EngineError as e:
        await _close(stream)
        await _meter(request, p, call, tally)
        raise bad_request(str(e)) from None

    def sse(payload: dict) -> str:
        return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"

    def chunk(text: str, finish: str | None, *, is_first: bool = False) -> str:
        out = {"id": call.request_id, "object": chunk_obj, "created": created, "model": call.model,
               "choices": [_choice(call, text, finish, delta=True, first=is_first)], "system_fingerprint": None}
        if call.include_usage:
            out["usage"] = None
        return sse(out)

    async def events() -> AsyncIterator[str]:
        try:
            if call.kind == "chat":
                yield chunk("", None, is_first=True)
            pending = [first] if first is not None else []
            while True:
                d = pending.pop() if pending else await anext(stream, None)
                if d is None:
                    break
                tally.add(d)
                if d.text or d.finish_reason:
                    yield chunk(d.text, d.finish_reason)
            if call.include_usage:
                yield sse({"id": call.request_id, "object": chunk_obj, "created": created, "model": call.model,
                           "choices": [], "usage": _usage(tally.prompt, tally.cached, tally.completion)})
            yield "data: [DONE]\n\n"
        except EngineError as e:
            yield sse({"error": {"message": str(e), "type": "invalid_request_error", "param": None, "code": None}})
        finally:
            await _close(stream)
            await _meter(request, p, call, tally)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={**_headers(call), "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.post("/chat/completions")
async def chat_completions(request: Request, body: ChatCompletionRequest, p: Principal = Depends(principal)):
    if body.tools:
        raise bad_request("Tool calling is not supported yet; send plain messages.", param="tools")
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in body.messages]
    call = await _prepare(request, p, body, lambda engine: engine.chat_prompt(messages), "chat")
    return await _run(request, p, call)


@router.post("/completions")
async def completions(request: Request, body: CompletionRequest, p: Principal = Depends(principal)):
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
        fn = lambda engine: ids  # noqa: E731
    else:
        fn = lambda engine: engine.encode(prompt)  # noqa: E731
    call = await _prepare(request, p, body, fn, "text")
    return await _run(request, p, call)

