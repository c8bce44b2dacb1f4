"""What ``Tenfold`` and ``AsyncTenfold`` share: configuration, resources, building requests, turning
answers into results or exceptions, and the retry decisions.

Owns: credential resolution (via ``credentials``), the URL rules (paths under ``/v1``; ``//health`` is a
server-root path), default headers, the resource attributes, the "no API key configured" hint on a 401,
and the top-level calls ``health()`` and ``me()``. Does not own: the send-and-retry loop, which differs
only in ``await`` (``client``), or the policy itself (``_retries``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from tenfold.sdk._request import RequestOptions, compact
from tenfold.sdk._response import APIResponse
from tenfold.sdk._retries import status_retry_delay, transport_retry_delay
from tenfold.sdk.credentials import resolve
from tenfold.sdk.errors import (
    AuthenticationError,
    TenfoldError,
    connection_error,
    error_from_response,
)
from tenfold.sdk.resources import (
    Adapters,
    ApiKeys,
    AsyncBatches,
    AsyncDeployments,
    Batches,
    Chat,
    Completions,
    Deployments,
    Files,
    FineTuning,
    Models,
    Organizations,
    Usage,
)
from tenfold.types.admin import Health, Principal

DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 2


class BaseClient:
    is_async = False

    def __init__(self, base_url: str | None, api_key: str | None, timeout: float, max_retries: int,
                 default_headers: Mapping[str, str] | None) -> None:
        from tenfold.version import __version__

        resolved = resolve(base_url, api_key)
        self.root_url: str = resolved.base_url
        self.base_url: str = resolved.base_url + "/v1"
        self.api_key: str | None = resolved.api_key
        self.api_key_source: str | None = resolved.api_key_source
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        headers = {"User-Agent": f"tenfold-sdk/{__version__}"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        self._headers = {**headers, **(default_headers or {})}
        self.files = Files(self)
        self.fine_tuning = FineTuning(self)
        self.chat = Chat(self)
        self.completions = Completions(self)
        self.models = Models(self)
        self.adapters = Adapters(self)
        self.batches = (AsyncBatches if self.is_async else Batches)(self)
        self.deployments = (AsyncDeployments if self.is_async else Deployments)(self)
        self.usage = Usage(self)
        self.organizations = Organizations(self)
        self.api_keys = ApiKeys(self)

    def url(self, path: str) -> str:
        """``/files`` → ``<root>/v1/files``; ``//health`` → ``<root>/health``."""
        return self.root_url + path[1:] if path.startswith("//") else self.base_url + path

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    # -- top-level calls --------------------------------------------------------------------------
    def health(self, *, timeout_seconds: float | None = None) -> Health:
        """``GET /health`` (no key needed): ``status`` ("ok" once ready), ``base_model``, ``version``."""
        return self._request(RequestOptions("GET", "//health", Health, timeout=timeout_seconds))

    def me(self, *, timeout_seconds: float | None = None) -> Principal:
        """``GET /v1/me``: the organization and key the API key belongs to; checks the key."""
        return self._request(RequestOptions("GET", "/me", Principal, timeout=timeout_seconds))

    def _request(self, options: RequestOptions) -> Any:  # pragma: no cover - each client defines it
        raise NotImplementedError

    # -- shared steps of the send loop --------------------------------------------------------------
    def _build_request(self, http: httpx.Client | httpx.AsyncClient, opts: RequestOptions) -> httpx.Request:
        return http.build_request(
            opts.method, self.url(opts.path), params=compact(opts.params or {}) or None, json=opts.json,
            files=opts.files, data=opts.data, headers=dict(opts.headers) or None,
            timeout=opts.timeout if opts.timeout is not None else httpx.USE_CLIENT_DEFAULT)

    def _status_error(self, response: httpx.Response) -> TenfoldError:
        err = error_from_response(response)
        if isinstance(err, AuthenticationError) and not self.api_key and "tenfold login" not in err.message:
            err.message = f"{err.message} (no API key configured: set TENFOLD_API_KEY or run `tenfold login`)"
            err.args = (err.message,)
        return err

    def _connection_error(self, exc: Exception, opts: RequestOptions) -> TenfoldError:
        return connection_error(self.root_url, exc, opts.timeout if opts.timeout is not None else self.timeout)

    def _delay_after_status(self, err: TenfoldError, retries_taken: int) -> float | None:
        if retries_taken >= self.max_retries or err.status is None:
            return None
        return status_retry_delay(err.status, err.code, err.retry_after, retries_taken)

    def _delay_after_transport(self, request: httpx.Request, exc: Exception, retries_taken: int) -> float | None:
        if retries_taken >= self.max_retries:
            return None
        return transport_retry_delay(request.method, exc, retries_taken)

    def _result(self, response: httpx.Response, opts: RequestOptions, retries_taken: int) -> Any:
        raw = APIResponse(response, opts, url=self.root_url, is_async=self.is_async, retries_taken=retries_taken)
        return raw if opts.raw else raw.parse()


__all__ = ["BaseClient", "DEFAULT_TIMEOUT", "DEFAULT_MAX_RETRIES"]
