"""Validation of Batch API input files (``purpose="batch"``), line by line, before anything is stored.

Owns: the OpenAI batch line contract: one JSON object per line with a unique ``custom_id`` (string),
``method`` ``POST``, ``url`` one of ``/v1/chat/completions`` or ``/v1/completions``, and a ``body`` that
is a valid request for that url (checked by the same parser the HTTP routes use; ``stream`` must be off).
Errors name the 1-based line and say what to fix. Does not own: fine-tune files (``tenfold.training.data``)
or running the lines (``tenfold.batch.runner``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from tenfold.errors import ServiceError
from tenfold.inference.requests import ENDPOINTS, parse_body

MAX_LINES = 50_000


class BatchFileError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}" if line > 0 else message)
        self.line = line


@dataclass(frozen=True)
class BatchLineSpec:
    custom_id: str
    url: str
    body: dict


@dataclass(frozen=True)
class BatchFileSummary:
    n_requests: int
    urls: tuple[str, ...]


def parse_batch_file(data: bytes) -> list[BatchLineSpec]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BatchFileError(data[: exc.start].count(b"\n") + 1, "the file is not valid UTF-8; save it as UTF-8"
                             ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise BatchFileError(0, "the file is empty: add one request object per line")
    if len(lines) > MAX_LINES:
        raise BatchFileError(0, f"the file has {len(lines)} requests; a batch holds at most {MAX_LINES}. "
                                "Split it into several batches")
    seen: dict[str, int] = {}
    out: list[BatchLineSpec] = []
    for n, raw in enumerate(lines, start=1):
        if not raw.strip():
            raise BatchFileError(n, "blank line: every line must hold one request object")
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise BatchFileError(n, f"invalid JSON: {exc.msg} at column {exc.colno}") from None
        if not isinstance(obj, dict):
            raise BatchFileError(n, "each line must be a JSON object with custom_id, method, url and body")
        custom_id = obj.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            raise BatchFileError(n, "custom_id must be a non-empty string")
        if len(custom_id) > 512:
            raise BatchFileError(n, "custom_id is longer than 512 characters")
        if custom_id in seen:
            raise BatchFileError(n, f"custom_id {custom_id!r} was already used on line {seen[custom_id]}; "
                                    "every custom_id in a batch must be unique")
        seen[custom_id] = n
        if obj.get("method") != "POST":
            raise BatchFileError(n, f"method must be \"POST\" (got {obj.get('method')!r})")
        url = obj.get("url")
        if url not in ENDPOINTS:
            raise BatchFileError(n, f"url must be one of {', '.join(ENDPOINTS)} (got {url!r})")
        body = obj.get("body")
        if not isinstance(body, dict):
            raise BatchFileError(n, "body must be a JSON object holding the request")
        if body.get("stream"):
            raise BatchFileError(n, "body.stream must be false or absent: batch requests are not streamed")
        try:
            parse_body(ENDPOINTS[url], body)
        except ServiceError as e:
            raise BatchFileError(n, f"body: {e.message}") from None
        out.append(BatchLineSpec(custom_id=custom_id, url=url, body=body))
    return out


def validate_batch_file(data: bytes) -> BatchFileSummary:
    lines = parse_batch_file(data)
    return BatchFileSummary(n_requests=len(lines), urls=tuple(sorted({x.url for x in lines})))
