"""``client.batches``: the OpenAI Batch API (create, get, list, cancel) plus ``wait`` and ``results``.

Owns: the request shapes of ``/v1/batches``. Does not own: uploading the input file (``client.files.upload(...,
purpose="batch")``) or reading result files (``client.files.content``).
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tenfold.sdk.client import Tenfold

TERMINAL = ("completed", "failed", "expired", "cancelled")


class Batches:
    def __init__(self, client: Tenfold) -> None:
        self._client = client

    def create(self, input_file_id: str, endpoint: str = "/v1/chat/completions", completion_window: str = "24h",
               metadata: dict[str, str] | None = None) -> dict[str, Any]:
        body = {"input_file_id": input_file_id, "endpoint": endpoint, "completion_window": completion_window,
                "metadata": metadata}
        return self._client.request("POST", "/batches", json=body)

    def get(self, batch_id: str) -> dict[str, Any]:
        return self._client.request("GET", f"/batches/{batch_id}")

    def list(self, limit: int = 20, after: str | None = None) -> dict[str, Any]:
        return self._client.request("GET", "/batches", params={"limit": limit, "after": after})

    def cancel(self, batch_id: str) -> dict[str, Any]:
        return self._client.request("POST", f"/batches/{batch_id}/cancel")

    def wait(self, batch_id: str, *, timeout: float = 3600, poll: float = 1.0) -> dict[str, Any]:
        """Poll until the batch is completed, failed, expired or cancelled; return it."""
        deadline = time.monotonic() + timeout
        while True:
            b = self.get(batch_id)
            if b["status"] in TERMINAL or time.monotonic() > deadline:
                return b
            time.sleep(poll)

    def results(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        """The output lines then the error lines of a finished batch (not in input order: join on custom_id)."""
        lines: list[dict[str, Any]] = []
        for key in ("output_file_id", "error_file_id"):
            if batch.get(key):
                lines += [json.loads(x) for x in self._client.files.content(batch[key]).decode().splitlines() if x]
        return lines
