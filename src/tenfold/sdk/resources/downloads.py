"""Downloading a job's weights (``GET /v1/fine_tuning/jobs/{id}/content``) to a file, streamed.

Owns: the query (``checkpoint_step``, ``checkpoint_type``), where the archive lands (``output``: a file path,
or a folder that gets the server's file name; default the current folder), writing through a temporary
name so a broken download leaves no partial file, and progress callbacks (bytes so far). Written once
blocking and once for asyncio. Does not own: extracting (``tar --zstd -xf`` or
``tenfold.artifacts.archive.extract_safely``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tenfold.sdk._request import RequestOptions, compact, segment

if TYPE_CHECKING:
    import httpx

    from tenfold.sdk._request import Resource

Progress = Callable[[int], None]


def _options(job_id: str, step: int | None, kind: str, timeout: float | None) -> RequestOptions:
    return RequestOptions(method="GET", path=f"/fine_tuning/jobs/{segment(job_id)}/content",
                          params=compact({"checkpoint_step": step, "checkpoint_type": kind}), stream=True, raw=True,
                          timeout=timeout)


def _target(response: httpx.Response, job_id: str, output: str | Path | None) -> Path:
    m = re.search(r'filename="([^"/\\]+)"', response.headers.get("content-disposition", ""))
    name = m.group(1) if m else f"{job_id}.tar.zst"
    target = Path(output).expanduser() if output is not None else Path.cwd()
    if target.is_dir() or (output is not None and str(output).endswith(("/", os.sep))):
        target.mkdir(parents=True, exist_ok=True)
        target = target / name
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def download(resource: Resource, job_id: str, *, output: str | Path | None, checkpoint_step: int | None,
             checkpoint_type: str, on_progress: Progress | None, timeout_seconds: float | None) -> Path:
    raw = resource._client._request(_options(job_id, checkpoint_step, checkpoint_type, timeout_seconds))
    response = raw.http_response
    target = _target(response, job_id, output)
    tmp, done = target.with_name(target.name + ".part"), 0
    try:
        with open(tmp, "wb") as fh:
            for chunk in response.iter_bytes(1 << 20):
                fh.write(chunk)
                done += len(chunk)
                if on_progress is not None:
                    on_progress(done)
        os.replace(tmp, target)
    finally:
        response.close()
        tmp.unlink(missing_ok=True)
    return target


async def adownload(resource: Resource, job_id: str, *, output: str | Path | None, checkpoint_step: int | None,
                    checkpoint_type: str, on_progress: Progress | None, timeout_seconds: float | None) -> Path:
    raw = await resource._client._request(_options(job_id, checkpoint_step, checkpoint_type, timeout_seconds))
    response = raw.http_response
    target = _target(response, job_id, output)
    tmp, done = target.with_name(target.name + ".part"), 0
    try:
        with open(tmp, "wb") as fh:
            async for chunk in response.aiter_bytes(1 << 20):
                fh.write(chunk)
                done += len(chunk)
                if on_progress is not None:
                    on_progress(done)
        os.replace(tmp, target)
    finally:
        await response.aclose()
        tmp.unlink(missing_ok=True)
    return target
