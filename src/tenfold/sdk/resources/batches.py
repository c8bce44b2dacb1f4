"""``client.batches``: the OpenAI Batch API (``/v1/batches``) plus the ``wait`` and ``results`` helpers.

Owns: create, retrieve, list, cancel; ``wait`` (poll until the batch ends) and ``results`` (the output then
error lines of a finished batch), each written once blocking and once for asyncio (``AsyncBatches``).
Does not own: uploading the input file (``client.files.create(..., purpose="batch")``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping

from tenfold.sdk._request import Resource, compact, segment
from tenfold.types.batches import Batch, BatchOutputLine
from tenfold.types.common import ListResponse

RESULT_FILES = ("output_file_id", "error_file_id")


def _lines(content: bytes) -> list[BatchOutputLine]:
    return [BatchOutputLine.model_validate(json.loads(x)) for x in content.decode().splitlines() if x.strip()]


class Batches(Resource):
    def create(self, *, input_file_id: str, endpoint: str, completion_window: str = "24h",
               metadata: Mapping[str, str] | None = None, timeout_seconds: float | None = None) -> Batch:
        """Run every line of an uploaded ``batch`` file (``endpoint`` ``/v1/chat/completions`` or
        ``/v1/completions``) at batch priority and price."""
        body = compact({"input_file_id": input_file_id, "endpoint": endpoint, "completion_window": completion_window,
                        "metadata": dict(metadata) if metadata else None})
        return self._call("POST", "/batches", Batch, json=body, timeout_seconds=timeout_seconds)

    def retrieve(self, batch_id: str, *, timeout_seconds: float | None = None) -> Batch:
        return self._call("GET", f"/batches/{segment(batch_id)}", Batch, timeout_seconds=timeout_seconds)

    def list(self, *, limit: int | None = None, after: str | None = None,
             timeout_seconds: float | None = None) -> ListResponse[Batch]:
        return self._call("GET", "/batches", ListResponse[Batch], params={"limit": limit, "after": after},
                          timeout_seconds=timeout_seconds)

    def cancel(self, batch_id: str, *, timeout_seconds: float | None = None) -> Batch:
        """Stop starting new lines; finished lines are kept in the output file."""
        return self._call("POST", f"/batches/{segment(batch_id)}/cancel", Batch, timeout_seconds=timeout_seconds)

    def wait(self, batch_id: str, *, poll: float = 1.0, timeout: float = 3600.0,
             timeout_seconds: float | None = None) -> Batch:
        """Poll until the batch is completed, failed, expired or cancelled and return it; ``TimeoutError``
        after ``timeout`` seconds."""
        plain, deadline = self._plain(), time.monotonic() + timeout
        while True:
            batch = plain.retrieve(batch_id, timeout_seconds=timeout_seconds)
            if batch.done:
                return batch
            if time.monotonic() >= deadline:
                raise TimeoutError(f"batch {batch_id} still {batch.status} after {timeout:g}s")
            time.sleep(poll)

    def results(self, batch: Batch | str, *, timeout_seconds: float | None = None) -> list[BatchOutputLine]:
        """The output lines then the error lines of a finished batch (not in input order: join on
        ``custom_id``)."""
        plain = self._plain()
        if isinstance(batch, str):
            batch = plain.retrieve(batch, timeout_seconds=timeout_seconds)
        lines: list[BatchOutputLine] = []
        for file_id in (getattr(batch, key) for key in RESULT_FILES):
            if file_id:
                lines += _lines(self._client.files.content(file_id, timeout_seconds=timeout_seconds))
        return lines


class AsyncBatches(Batches):
    """``Batches`` for ``AsyncTenfold``: the same verbs (awaited); ``wait`` and ``results`` are coroutines."""

    async def wait(self, batch_id: str, *, poll: float = 1.0, timeout: float = 3600.0,  # type: ignore[override]
                   timeout_seconds: float | None = None) -> Batch:
        plain, deadline = self._plain(), time.monotonic() + timeout
        while True:
            batch = await plain.retrieve(batch_id, timeout_seconds=timeout_seconds)
            if batch.done:
                return batch
            if time.monotonic() >= deadline:
                raise TimeoutError(f"batch {batch_id} still {batch.status} after {timeout:g}s")
            await asyncio.sleep(poll)

    async def results(self, batch: Batch | str, *,  # type: ignore[override]
                      timeout_seconds: float | None = None) -> list[BatchOutputLine]:
        plain = self._plain()
        if isinstance(batch, str):
            batch = await plain.retrieve(batch, timeout_seconds=timeout_seconds)
        lines: list[BatchOutputLine] = []
        for file_id in (getattr(batch, key) for key in RESULT_FILES):
            if file_id:
                lines += _lines(await self._client.files.content(file_id, timeout_seconds=timeout_seconds))
        return lines


__all__ = ["Batches", "AsyncBatches"]
