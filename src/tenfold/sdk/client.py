"""The tenfold clients: ``Tenfold`` (blocking) and ``AsyncTenfold`` (asyncio), shaped like the openai SDK.

Owns: the one ``httpx`` client of each, the send-and-retry loop (written twice, once with ``await``), and
closing. Everything else — resources, request building, parsing, the retry policy — is shared
(``_base_client``, ``resources``, ``_retries``). Imports no server code.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import httpx

from tenfold.sdk._base_client import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT, BaseClient
from tenfold.sdk._request import RequestOptions


class Tenfold(BaseClient):
    """A client for one tenfold server: ``Tenfold(base_url=None, api_key=None, timeout=60.0, max_retries=2)``.

    ``base_url`` (with or without ``/v1``) and ``api_key`` default to ``TENFOLD_BASE_URL`` /
    ``TENFOLD_API_KEY``, then what ``tenfold login`` saved, then ``http://127.0.0.1:8000``. ``timeout`` is
    per request, in seconds; every method also takes ``timeout_seconds``. ``transport`` replaces httpx's
    (tests pass an ``httpx.MockTransport``).
    """

    is_async = False

    def __init__(self, base_url: str | None = None, api_key: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                 max_retries: int = DEFAULT_MAX_RETRIES, *, transport: httpx.BaseTransport | None = None,
                 default_headers: Mapping[str, str] | None = None) -> None:
        super().__init__(base_url, api_key, timeout, max_retries, default_headers)
        self._http = httpx.Client(headers=self._headers, timeout=self.timeout, transport=transport)

    def _request(self, opts: RequestOptions) -> Any:
        retries = 0
        while True:
            request = self._build_request(self._http, opts)
            try:
                response = self._http.send(request, stream=opts.stream)
            except httpx.TransportError as exc:
                delay = self._delay_after_transport(request, exc, retries)
                if delay is None:
                    raise self._connection_error(exc, opts) from exc
            else:
                if response.status_code < 400:
                    return self._result(response, opts, retries)
                try:
                    response.read()
                finally:
                    response.close()
                err = self._status_error(response)
                delay = self._delay_after_status(err, retries)
                if delay is None:
                    raise err
            self._sleep(delay)
            retries += 1

    def _sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Tenfold:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncTenfold(BaseClient):
    """``Tenfold`` for asyncio: the same resources and arguments; every call is awaited, streams are
    ``AsyncStream`` (``async for``), and ``fine_tuning.jobs.wait`` / ``batches.wait`` poll without blocking."""

    is_async = True

    def __init__(self, base_url: str | None = None, api_key: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                 max_retries: int = DEFAULT_MAX_RETRIES, *, transport: httpx.AsyncBaseTransport | None = None,
                 default_headers: Mapping[str, str] | None = None) -> None:
        super().__init__(base_url, api_key, timeout, max_retries, default_headers)
        self._http = httpx.AsyncClient(headers=self._headers, timeout=self.timeout, transport=transport)

    async def _request(self, opts: RequestOptions) -> Any:
        retries = 0
        while True:
            request = self._build_request(self._http, opts)
            try:
                response = await self._http.send(request, stream=opts.stream)
            except httpx.TransportError as exc:
                delay = self._delay_after_transport(request, exc, retries)
                if delay is None:
                    raise self._connection_error(exc, opts) from exc
            else:
                if response.status_code < 400:
                    return self._result(response, opts, retries)
                try:
                    await response.aread()
                finally:
                    await response.aclose()
                err = self._status_error(response)
                delay = self._delay_after_status(err, retries)
                if delay is None:
                    raise err
            await self._sleep(delay)
            retries += 1

    async def _sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncTenfold:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


__all__ = ["Tenfold", "AsyncTenfold"]
