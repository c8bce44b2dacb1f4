"""Routes for tenfold's own processes, not for users (kept out of the OpenAPI document): a replica on another
machine fetches an attached adapter by content digest with its deployment's secret. Parse, call the
deployment service, stream."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from tenfold.api.deps import ctx
from tenfold.artifacts.archive import stream_tar_zst
from tenfold.deployments import service

router = APIRouter(prefix="/internal", include_in_schema=False)


@router.get("/adapters/{digest}")
def adapter(request: Request, digest: str) -> StreamingResponse:
    secret = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    name, files = service.adapter_for_replica(ctx(request), secret=secret, digest=digest)
    return StreamingResponse(stream_tar_zst(files, root=name), media_type="application/zstd")
