"""Helpers for batch tests: building input files and waiting for a batch."""

from __future__ import annotations

import json
import time

import httpx

TERMINAL = ("completed", "failed", "expired", "cancelled")


def line(custom_id: str, content: str = "Hello", *, model: str = "tiny-random-llama", max_tokens: int = 4,
         url: str = "/v1/chat/completions", **body) -> dict:
    if url == "/v1/chat/completions":
        b = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens,
             "temperature": 0, **body}
    else:
        b = {"model": model, "prompt": content, "max_tokens": max_tokens, "temperature": 0, **body}
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": b}


def jsonl(rows) -> bytes:
    return ("\n".join(json.dumps(r) for r in rows) + "\n").encode()


def upload_batch_file(c: httpx.Client, rows) -> httpx.Response:
    return c.post("/files", files={"file": ("batch.jsonl", jsonl(rows), "application/jsonl")},
                  data={"purpose": "batch"})


def wait_batch(c: httpx.Client, batch_id: str, *, until=TERMINAL, timeout: float = 120) -> dict:
    deadline = time.time() + timeout
    b = {}
    while time.time() < deadline:
        b = c.get(f"/batches/{batch_id}").json()
        if b["status"] in until:
            return b
        time.sleep(0.1)
    raise TimeoutError(f"batch {batch_id} still {b.get('status')} after {timeout}s")


def read_lines(c: httpx.Client, file_id: str | None) -> list[dict]:
    if file_id is None:
        return []
    return [json.loads(x) for x in c.get(f"/files/{file_id}/content").text.splitlines() if x.strip()]
