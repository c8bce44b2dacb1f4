"""Inference calls: ``client.chat`` and ``client.completions`` (OpenAI contracts) and SSE streaming.

Owns: building the request body and the ``X-Tenfold-Expected-Checkpoint`` header, reading
``X-Tenfold-Checkpoint``, the result dataclasses, and parsing server-sent events (``data:`` lines until
``data: [DONE]``). Does not own: generation (the server) or printing (the CLI).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from tenfold.sdk.errors import TenfoldError, connection_error, error_from_body

if TYPE_CHECKING:
    from tenfold.sdk.client import Tenfold

CHECKPOINT_HEADER = "X-Tenfold-Checkpoint"
EXPECTED_CHECKPOINT_HEADER = "X-Tenfold-Expected-Checkpoint"


class _UsageMixin:
    usage: dict[str, Any] | None

    @property
    def prompt_tokens(self) -> int:
        return int((self.usage or {}).get("prompt_tokens") or 0)

    @property
    def cached_tokens(self) -> int:
        details = (self.usage or {}).get("prompt_tokens_details") or {}
        return int(details.get("cached_tokens") or 0)

    @property
    def completion_tokens(self) -> int:
        return int((self.usage or {}).get("completion_tokens") or 0)


@dataclass
class ChatResult(_UsageMixin):
    """A finished (non-streaming) chat completion."""

    content: str
    usage: dict[str, Any] | None
    checkpoint: str | None  # X-Tenfold-Checkpoint: which checkpoint served (None for final adapter/base)
    raw: dict[str, Any]
    finish_reason: str | None = None


@dataclass
class CompletionResult(_UsageMixin):
    """A finished (non-streaming) text completion."""

    text: str
    usage: dict[str, Any] | None
    checkpoint: str | None
    raw: dict[str, Any]
    finish_reason: str | None = None

    @property
    def content(self) -> str:
        return self.text


def iter_sse_data(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """Decode server-sent events into JSON payloads, stopping at ``data: [DONE]``.

    Multi-line ``data:`` fields of one event are joined with newlines; comments (``:``) and other fields
    (``event:``, ``id:``, ``retry:``) are ignored. A payload ``{"error": {...}}`` raises ``TenfoldError``.
    """
    buffer: list[str] = []

    def dispatch() -> dict[str, Any] | None:
        text = "\n".join(buffer)
        buffer.clear()
        if not text:
            return None
        try:
            payload = json.loads(text)
        except ValueError as exc:
            raise TenfoldError(None, f"malformed server-sent event: {text[:200]!r}") from exc
        if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
            err = error_from_body(int(payload["error"].get("status") or 500), payload)
            err.status = None  # the HTTP status was 200; the failure happened mid-stream
            raise err
        return payload

    for raw_line in lines:
        line = raw_line.rstrip("\r\n")
        if not line:
            payload = dispatch()
            if payload is not None:
                yield payload
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name != "data":
            continue
        value = value[1:] if value.startswith(" ") else value
        if value.strip() == "[DONE]" and not buffer:
            return
        buffer.append(value)
    payload = dispatch()
    if payload is not None:
        yield payload


class ChatStream(_UsageMixin):
    """A streaming answer: iterate for text deltas; then ``content``, ``usage``, ``finish_reason`` are set.

    ``checkpoint`` (from the response header) is known before the first delta. Iterate once; the HTTP
    response is closed when iteration ends or on ``close()``.
    """

    def __init__(self, response: httpx.Response, kind: str, url: str) -> None:
        self._response = response
        self._kind = kind  # "chat" | "completion"
        self._url = url
        self.checkpoint: str | None = response.headers.get(CHECKPOINT_HEADER)
        self.content = ""
        self.usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self.chunks: list[dict[str, Any]] = []
        self._consumed = False

    def __iter__(self) -> Iterator[str]:
        if self._consumed:
            raise RuntimeError("a ChatStream can be iterated only once")
        self._consumed = True
        try:
            for chunk in iter_sse_data(self._response.iter_lines()):
                self.chunks.append(chunk)
                if chunk.get("usage"):
                    self.usage = chunk["usage"]
                for choice in chunk.get("choices") or []:
                    if choice.get("finish_reason"):
                        self.finish_reason = choice["finish_reason"]
                    if self._kind == "chat":
                        delta = (choice.get("delta") or {}).get("content") or ""
                    else:
                        delta = choice.get("text") or ""
                    if delta:
                        self.content += delta
                        yield delta
        except httpx.TransportError as exc:
            raise connection_error(self._url, exc) from exc
        finally:
            self._response.close()

    def close(self) -> None:
        self._response.close()

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _body(model: str, max_tokens: int, temperature: float, top_p: float | None,
          stop: str | list[str] | None, seed: int | None, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "temperature": temperature}
    for key, value in (("top_p", top_p), ("stop", stop), ("seed", seed)):
        if value is not None:
            body[key] = value
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _headers(expected_checkpoint: str | None) -> dict[str, str] | None:
    # An empty string is meaningful ("require no checkpoint"), so only None leaves the header out.
    # The server compares after stripping whitespace; strip here too (HTTP forbids edge whitespace in values).
    return None if expected_checkpoint is None else {EXPECTED_CHECKPOINT_HEADER: expected_checkpoint.strip()}


def chat(client: Tenfold, model: str, messages: list[dict[str, Any]], *, max_tokens: int,
         temperature: float, top_p: float | None, stop: str | list[str] | None, seed: int | None,
         expected_checkpoint: str | None, stream: bool, timeout_seconds: float | None) -> ChatResult | ChatStream:
    body = _body(model, max_tokens, temperature, top_p, stop, seed, stream)
    body["messages"] = messages
    response = client.send("POST", "/chat/completions", json=body, headers=_headers(expected_checkpoint),
                           timeout=timeout_seconds, stream=stream)
    if stream:
        return ChatStream(response, "chat", client.root_url)
    raw = response.json()
    choice = (raw.get("choices") or [{}])[0]
    return ChatResult(
        content=(choice.get("message") or {}).get("content") or "",
        usage=raw.get("usage"),
        checkpoint=response.headers.get(CHECKPOINT_HEADER),
        raw=raw,
        finish_reason=choice.get("finish_reason"),
    )


def completions(client: Tenfold, model: str, prompt: str, *, max_tokens: int, temperature: float,
                top_p: float | None, stop: str | list[str] | None, seed: int | None,
                expected_checkpoint: str | None, stream: bool,
                timeout_seconds: float | None) -> CompletionResult | ChatStream:
    body = _body(model, max_tokens, temperature, top_p, stop, seed, stream)
    body["prompt"] = prompt
    response = client.send("POST", "/completions", json=body, headers=_headers(expected_checkpoint),
                           timeout=timeout_seconds, stream=stream)
    if stream:
        return ChatStream(response, "completion", client.root_url)
    raw = response.json()
    choice = (raw.get("choices") or [{}])[0]
    return CompletionResult(
        text=choice.get("text") or "",
        usage=raw.get("usage"),
        checkpoint=response.headers.get(CHECKPOINT_HEADER),
        raw=raw,
        finish_reason=choice.get("finish_reason"),
    )
