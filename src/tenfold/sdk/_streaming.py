"""Server-sent events: decoding ``data:`` lines into JSON payloads, and the ``Stream`` / ``AsyncStream``
objects a ``stream=True`` call returns.

Owns: the SSE rules the server uses (events separated by blank lines, multi-line ``data`` joined with
newlines, comments and other fields ignored, ``data: [DONE]`` ends the stream, an ``{"error": …}``
payload raises), turning each payload into the chunk model, and closing the HTTP response when iteration
ends, fails or the stream is closed. Does not own: opening the request (the clients).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any, Generic, TypeVar

import httpx
from pydantic import BaseModel

from tenfold.sdk._request import CHECKPOINT_HEADER
from tenfold.sdk.errors import TenfoldError, connection_error, error_from_body, validate

T = TypeVar("T", bound=BaseModel)


class SSEDecoder:
    """Feed lines; get a payload back whenever an event is complete. ``done`` once ``[DONE]`` was seen."""

    def __init__(self) -> None:
        self._data: list[str] = []
        self.done = False

    def feed(self, line: str) -> dict[str, Any] | None:
        line = line.rstrip("\r\n")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if name != "data":
            return None
        value = value[1:] if value.startswith(" ") else value
        if value.strip() == "[DONE]" and not self._data:
            self.done = True
            return None
        self._data.append(value)
        return None

    def flush(self) -> dict[str, Any] | None:
        """The last event when the stream ended without a blank line after it."""
        return None if self.done else self._dispatch()

    def _dispatch(self) -> dict[str, Any] | None:
        text = "\n".join(self._data)
        self._data.clear()
        if not text:
            return None
        try:
            payload = json.loads(text)
        except ValueError as exc:
            raise TenfoldError(None, f"malformed server-sent event: {text[:200]!r}") from exc
        if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
            raise error_from_body(None, payload)  # the HTTP status was 200; the failure happened mid-stream
        return payload


def iter_sse_data(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The JSON payloads of an event stream given as lines, up to ``data: [DONE]``."""
    decoder = SSEDecoder()
    for line in lines:
        payload = decoder.feed(line)
        if payload is not None:
            yield payload
        if decoder.done:
            return
    payload = decoder.flush()
    if payload is not None:
        yield payload


def _chunk(cast_to: type[T], payload: dict[str, Any], response: httpx.Response) -> T:
    request = response.request
    return validate(cast_to, payload, where=f"{request.method} {request.url.path} (a streamed chunk)",
                    response=response)


class Stream(Generic[T]):
    """Iterate for chunk models (``ChatCompletionChunk`` or ``Completion``); a context manager that closes
    the response. ``checkpoint`` (the ``X-Tenfold-Checkpoint`` header) is known before the first chunk."""

    def __init__(self, *, cast_to: type[T], response: httpx.Response, url: str) -> None:
        self.response = response
        self._cast_to = cast_to
        self._url = url
        self._iterator = self._chunks()

    @property
    def checkpoint(self) -> str | None:
        return self.response.headers.get(CHECKPOINT_HEADER)

    def __iter__(self) -> Iterator[T]:
        return self._iterator

    def __next__(self) -> T:
        return next(self._iterator)

    def _chunks(self) -> Iterator[T]:
        try:
            for payload in iter_sse_data(self.response.iter_lines()):
                yield _chunk(self._cast_to, payload, self.response)
        except httpx.TransportError as exc:
            raise connection_error(self._url, exc) from exc
        finally:
            self.response.close()

    def close(self) -> None:
        self.response.close()

    def __enter__(self) -> Stream[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncStream(Generic[T]):
    """``Stream`` for ``AsyncTenfold``: ``async for chunk in stream``, ``async with``, ``await close()``."""

    def __init__(self, *, cast_to: type[T], response: httpx.Response, url: str) -> None:
        self.response = response
        self._cast_to = cast_to
        self._url = url
        self._iterator = self._chunks()

    @property
    def checkpoint(self) -> str | None:
        return self.response.headers.get(CHECKPOINT_HEADER)

    def __aiter__(self) -> AsyncIterator[T]:
        return self._iterator

    async def __anext__(self) -> T:
        return await self._iterator.__anext__()

    async def _chunks(self) -> AsyncIterator[T]:
        decoder = SSEDecoder()
        try:
            async for line in self.response.aiter_lines():
                payload = decoder.feed(line)
                if payload is not None:
                    yield _chunk(self._cast_to, payload, self.response)
                if decoder.done:
                    return
            payload = decoder.flush()
            if payload is not None:
                yield _chunk(self._cast_to, payload, self.response)
        except httpx.TransportError as exc:
            raise connection_error(self._url, exc) from exc
        finally:
            await self.response.aclose()

    async def close(self) -> None:
        await self.response.aclose()

    async def __aenter__(self) -> AsyncStream[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


__all__ = ["SSEDecoder", "iter_sse_data", "Stream", "AsyncStream"]
