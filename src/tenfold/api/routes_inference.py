"""``POST /v1/chat/completions`` and ``POST /v1/completions``: OpenAI contracts, streaming (SSE) or not.

Owns: the HTTP plumbing only: reading the expected-checkpoint header and answering JSON or an event
stream. Parsing into an engine request, response shapes and metering live in ``tenfold.api.inference_core``,
which the batch runner shares.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask

from tenfold.api import inference_core as core
from tenfold.api.deps import Principal, ctx, principal
from tenfold.types.inference import ChatCompletionRequest, CompletionRequest

router = APIRouter(prefix="/v1")
DEFAULT_MAX_TOKENS = core.DEFAULT_MAX_TOKENS
CHECKPOINT_HEADER = core.CHECKPOINT_HEADER
EXPECTED_HEADER = "x-tenfold-expected-checkpoint"


async def _serve(request: Request, p: Principal, kind: str, body):
    c = ctx(request)
    call = await core.prepare(c, p, kind, body, expected_checkpoint=request.headers.get(EXPECTED_HEADER))
    if not call.stream:
        return JSONResponse(await core.complete(c, p, call), headers=core.headers(call))
    opened = await core.open_stream(c, p, call)
    return StreamingResponse(opened.events, media_type="text/event-stream", background=BackgroundTask(opened.finish),
                             headers={**core.headers(call), "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.post("/chat/completions")
async def chat_completions(request: Request, body: ChatCompletionRequest, p: Principal = Depends(principal)):
    return await _serve(request, p, "chat", body)


@router.post("/completions")
async def completions(request: Request, body: CompletionRequest, p: Principal = Depends(principal)):
    return await _serve(request, p, "text", body)
