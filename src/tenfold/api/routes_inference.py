"""``POST /v1/chat/completions`` and ``POST /v1/completions``: OpenAI contracts, streaming (SSE) or not.

Owns: the HTTP plumbing only: the checkpoint headers, JSON or an event stream (``data: {...}`` chunks, an
error event if the request fails mid-stream, then ``data: [DONE]``). Building calls, running and metering
them live in ``tenfold.inference``, which the batch runner shares.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask

from tenfold.api import errors
from tenfold.api.contract import STREAM_CHUNKS, sse_or_json
from tenfold.api.contract import errors as error_responses
from tenfold.api.deps import ctx, principal
from tenfold.context import Principal
from tenfold.errors import ServiceError
from tenfold.inference import requests, streams
from tenfold.inference.requests import Call
from tenfold.types.chat import ChatCompletion, ChatCompletionChunk
from tenfold.types.completions import Completion
from tenfold.types.inference import ChatCompletionRequest, CompletionRequest

router = APIRouter(prefix="/v1")
CHECKPOINT_HEADER = "X-Tenfold-Checkpoint"
EXPECTED_HEADER = "x-tenfold-expected-checkpoint"
SESSION_HEADER = "x-session-affinity"  # keeps a conversation on one replica of a deployment (else the ``user`` field)


def _sse(payload: dict) -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"


async def _events(chunks: AsyncIterator[dict]) -> AsyncIterator[str]:
    try:
        async for chunk in chunks:
            yield _sse(chunk)
        yield "data: [DONE]\n\n"
    except ServiceError as e:  # failed mid-stream: the status line is sent, so the error is an event
        yield _sse(errors.render(e)[1])


def _headers(call: Call) -> dict[str, str]:
    return {CHECKPOINT_HEADER: call.route.checkpoint} if call.route.checkpoint else {}


async def _serve(request: Request, p: Principal, kind: str, body):
    c = ctx(request)
    call = await requests.prepare(c, p, kind, body, expected_checkpoint=request.headers.get(EXPECTED_HEADER),
                                  session_key=request.headers.get(SESSION_HEADER))
    if not call.stream:
        return JSONResponse(await streams.complete(c, p, call), headers=_headers(call))
    opened = await streams.open_stream(c, p, call)
    return StreamingResponse(_events(opened.chunks), media_type="text/event-stream",
                             background=BackgroundTask(opened.finish),
                             headers={**_headers(call), "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


_ERRORS = error_responses(400, 401, 404, 409, 429, 503)
STREAM_CHUNKS.append(ChatCompletionChunk)


@router.post("/chat/completions", response_model=ChatCompletion,
             responses={**sse_or_json("A chat.completion, or chat.completion.chunk events when streaming.",
                                      ChatCompletionChunk), **_ERRORS})
async def chat_completions(request: Request, body: ChatCompletionRequest, p: Principal = Depends(principal)):
    return await _serve(request, p, "chat", body)


@router.post("/completions", response_model=Completion,
             responses={**sse_or_json("A text_completion, or text_completion events when streaming.", Completion),
                        **_ERRORS})
async def completions(request: Request, body: CompletionRequest, p: Principal = Depends(principal)):
    return await _serve(request, p, "text", body)
