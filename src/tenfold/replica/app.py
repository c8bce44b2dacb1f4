"""The replica's HTTP server: the engine of one base model behind the replica protocol, which is the OpenAI
completions API as vLLM's server extends it (so the api can put a vLLM replica in the same pool).

Owns: the secret check (every route, health included, needs ``Authorization: Bearer <deployment secret>``;
anything else is a 401, so nothing reaches a replica around the api's auth, isolation and billing),
``POST /v1/completions`` (prompt token ids, streamed ``text_completion`` chunks, a final usage chunk with
cached tokens; ``cache_salt`` namespaces the prefix cache, ``priority`` schedules), ``POST
/v1/load_lora_adapter`` and ``/v1/unload_lora_adapter`` (LoRA names are adapter content digests; a folder
not on this machine is fetched from the api by digest, ``tenfold.replica.fetch``),
``GET /health`` (state, requests in flight, resident adapters) and ``GET /metrics``; and the orphan guard: a
replica that hears from no api for ``orphan_seconds`` exits. Does not own: the engine, routing or billing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import Field, ValidationError

from tenfold.engine.remote import constraint_of
from tenfold.engine.types import AdapterError, AdapterRef, Engine, GenerationRequest, SamplingParams
from tenfold.errors import RateLimited, ServiceError
from tenfold.inference.responses import LogprobShaper, chunk_body, usage_body
from tenfold.replica.fetch import fetch_adapter
from tenfold.types.fields import Request as RequestBody
from tenfold.types.fields import describe

log = logging.getLogger("tenfold.replica")


class Completion(RequestBody):
    model: str
    prompt: list[int] = Field(min_length=1)
    max_tokens: int = Field(ge=1)
    temperature: float = Field(default=1.0, ge=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    top_k: int = Field(default=0, ge=-1)
    seed: int | None = None
    stop: list[str] | None = None
    stop_token_ids: list[int] | None = None
    ignore_eos: bool = False
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logprobs: int | None = Field(default=None, ge=0, le=20)
    stream: bool = True
    stream_options: dict | None = None
    cache_salt: str | None = None
    priority: int = 0
    structured_outputs: dict | None = None  # vLLM's: {"json": schema} or {"grammar": lark}


class LoadAdapter(RequestBody):
    lora_name: str = Field(min_length=1)
    # A folder on this machine; empty (or missing here) when the replica does not share the api's disk: the
    # adapter is then fetched from the api by its digest (``tenfold.replica.fetch``).
    lora_path: str = ""


class UnloadAdapter(RequestBody):
    lora_name: str = Field(min_length=1)


def _error(status: int, message: str, code: str | None = None, headers: dict | None = None) -> JSONResponse:
    kind = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
            429: "rate_limit_error"}.get(status, "api_error")
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": code}},
                        status_code=status, headers=headers)


def create_replica_app(engine: Engine, *, secret: str, replica_id: str, orphan_seconds: float = 600.0,
                       api_url: str = "", cache_dir: Path | None = None) -> FastAPI:
    adapters: dict[str, AdapterRef] = {}
    state = {"in_flight": 0, "last_seen": time.monotonic(), "ready": False}

    async def orphan_guard() -> None:
        while True:
            await asyncio.sleep(min(5.0, orphan_seconds / 4))
            if time.monotonic() - state["last_seen"] > orphan_seconds:
                log.warning("replica %s: no api contact for %.0f s; exiting", replica_id, orphan_seconds)
                os.kill(os.getpid(), signal.SIGTERM)
                return

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await engine.start()
        state["ready"] = True
        guard = asyncio.create_task(orphan_guard())
        try:
            yield
        finally:
            guard.cancel()
            await engine.stop()

    app = FastAPI(title="tenfold replica", lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)

    @app.middleware("http")
    async def require_secret(request: Request, call_next):
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), secret.encode()):
            return _error(401, "This is a replica of a tenfold deployment: call it through the tenfold api "
                               "(model dep-…), not directly.", "replica_secret_required")
        state["last_seen"] = time.monotonic()
        return await call_next(request)

    async def body_of(request: Request, model: type[RequestBody]):
        try:
            return model.model_validate(await request.json())
        except ValidationError as e:
            return _error(400, describe(list(e.errors()))[0])
        except ValueError:
            return _error(400, "request body is not valid JSON")

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok" if state["ready"] else "starting", "replica_id": replica_id,
                "base_model": engine.base_model, "max_context": engine.max_context, "in_flight": state["in_flight"],
                "adapters": sorted(adapters)}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/load_lora_adapter")
    async def load(request: Request):
        body = await body_of(request, LoadAdapter)
        if isinstance(body, Response):
            return body
        path = Path(body.lora_path) if body.lora_path else None
        try:
            if path is None or not path.is_dir():
                if not api_url or cache_dir is None:
                    return _error(400, f"The adapter folder {body.lora_path!r} is not on this machine and the "
                                       "replica has no TENFOLD_API_URL to fetch it from.", "invalid_adapter")
                path = await asyncio.to_thread(fetch_adapter, api_url, secret, body.lora_name, cache_dir)
            ref = AdapterRef(digest=body.lora_name, path=path)
            await engine.load_adapter(ref)
        except AdapterError as e:
            return _error(400, str(e), "invalid_adapter")
        adapters[body.lora_name] = ref
        return {"lora_name": body.lora_name, "loaded": True}

    @app.post("/v1/unload_lora_adapter")
    async def unload(request: Request):
        body = await body_of(request, UnloadAdapter)
        if isinstance(body, Response):
            return body
        if adapters.pop(body.lora_name, None) is None:
            return _error(404, f"No adapter named {body.lora_name} is loaded.")
        return {"lora_name": body.lora_name, "unloaded": True}

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = await body_of(request, Completion)
        if isinstance(body, Response):
            return body
        adapter = None
        if body.model != engine.base_model:
            adapter = adapters.get(body.model)
            if adapter is None:
                return _error(404, f"The model {body.model} is neither this replica's base model nor a loaded "
                                   "adapter; load it with POST /v1/load_lora_adapter.", "model_not_found")
        sampling = SamplingParams(
            max_tokens=body.max_tokens, temperature=body.temperature, top_p=body.top_p, top_k=body.top_k,
            seed=body.seed, stop=tuple(body.stop or ()), stop_token_ids=tuple(body.stop_token_ids or ()),
            logprobs=body.logprobs, presence_penalty=body.presence_penalty,
            frequency_penalty=body.frequency_penalty, ignore_eos=body.ignore_eos)
        rid = "cmpl-" + os.urandom(12).hex()
        try:
            constraint = constraint_of(body.structured_outputs)
            if constraint is not None and getattr(engine, "grammars", None) is not None:
                await asyncio.to_thread(engine.grammars.check, constraint)  # refused up front, off the loop
            gen = GenerationRequest(request_id=rid, prompt_token_ids=body.prompt, sampling=sampling, adapter=adapter,
                                    organization=body.cache_salt or "", priority=body.priority, constraint=constraint)
            stream = engine.generate(gen)
        except RateLimited as e:
            return _error(429, e.message, e.code, {"Retry-After": str(max(1, round(e.retry_after or 1)))})
        except ServiceError as e:
            return _error(400, e.message, e.code)
        return StreamingResponse(_events(stream, rid, body), media_type="text/event-stream")

    async def _events(stream: AsyncIterator, rid: str, body: Completion) -> AsyncIterator[str]:
        created, shaper = int(time.time()), LogprobShaper("text")
        state["in_flight"] += 1
        try:
            async for d in stream:
                lp = shaper.shape(d.logprobs) if body.logprobs is not None else None
                if d.text or d.finish_reason or lp:
                    choice = {"index": 0, "text": d.text, "finish_reason": d.finish_reason, "logprobs": lp}
                    yield _sse(chunk_body("text", request_id=rid, created=created, model=body.model, choices=[choice]))
                if d.finish_reason:
                    yield _sse(chunk_body("text", request_id=rid, created=created, model=body.model, choices=[],
                                          usage=usage_body(d.prompt_tokens, d.cached_tokens, d.completion_tokens),
                                          with_usage=True))
            yield "data: [DONE]\n\n"
        except ServiceError as e:
            yield _sse({"error": {"message": e.message, "type": "invalid_request_error", "param": None,
                                  "code": e.code}})
        finally:
            state["in_flight"] -= 1
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

    return app


def _sse(payload: dict) -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"
