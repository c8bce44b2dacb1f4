"""Exceptions raised by the tenfold SDK.

Owns: the error hierarchy and turning an HTTP error response (OpenAI error shape
``{"error": {"message", "type", "param", "code"}}``) into the right exception.
Does not own: rendering errors for humans (that is ``tenfold.cli.output``).
"""

from __future__ import annotations

from typing import Any

import httpx


class TenfoldError(Exception):
    """Any error from the tenfold API (or from reaching it).

    ``status`` is the HTTP status (``None`` when the server was not reached); ``type``, ``code`` and
    ``param`` come from the OpenAI-shaped error body when the server sent one.
    """

    def __init__(
        self,
        status: int | None,
        message: str,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, message={self.message!r}, code={self.code!r})"


class BadRequestError(TenfoldError):
    """400: the request was invalid; the message says what to change."""


class AuthenticationError(TenfoldError):
    """401: no API key, or an unknown/revoked one."""


class PermissionDeniedError(TenfoldError):
    """403: the key may not do this (e.g. an admin-only action)."""


class NotFoundError(TenfoldError):
    """404: not found, or not visible to the caller's organization."""


class ConflictError(TenfoldError):
    """409: e.g. deploying an unfinished job, or a checkpoint pin that does not match what is live."""


class RateLimitError(TenfoldError):
    """429: slow down; ``retry_after`` says for how long when the server said so."""


class ServiceUnavailableError(TenfoldError):
    """503: e.g. ``DEPLOYMENT_SCALING_UP``; retry after ``retry_after`` seconds."""


class APIConnectionError(TenfoldError):
    """The server could not be reached at all (nothing listening, DNS, refused, reset)."""


class APITimeoutError(APIConnectionError):
    """The server did not answer within the timeout."""


_BY_STATUS: dict[int, type[TenfoldError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: BadRequestError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


def error_from_body(status: int, body: Any, *, retry_after: float | None = None) -> TenfoldError:
    """Build the exception for ``status`` from a decoded JSON body (or raw text)."""
    cls = _BY_STATUS.get(status, TenfoldError)
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        message = str(err.get("message") or f"HTTP {status}")
        return cls(status, message, err.get("type"), err.get("code"), err.get("param"), retry_after=retry_after)
    if isinstance(body, dict) and "detail" in body:  # a framework default slipped through
        return cls(status, f"HTTP {status}: {body['detail']}", retry_after=retry_after)
    text = body.strip() if isinstance(body, str) else ""
    message = f"HTTP {status}: {text[:500]}" if text else f"HTTP {status}"
    return cls(status, message, retry_after=retry_after)


def error_from_response(response: httpx.Response) -> TenfoldError:
    """Read an error response (its body must already be loaded) into an exception."""
    retry_after: float | None = None
    header = response.headers.get("retry-after")
    if header:
        try:
            retry_after = float(header)
        except ValueError:
            retry_after = None
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    return error_from_body(response.status_code, body, retry_after=retry_after)


def connection_error(url: str, exc: Exception, timeout: float | None = None) -> TenfoldError:
    """The error for a transport failure talking to ``url``."""
    if isinstance(exc, httpx.TimeoutException):
        after = f" after {timeout:g}s" if timeout else ""
        return APITimeoutError(None, f"request to the tenfold server at {url} timed out{after}")
    if isinstance(exc, httpx.LocalProtocolError):  # we could not even form the request (e.g. a bad header)
        return TenfoldError(None, f"could not send the request to {url}: {exc}")
    if isinstance(exc, httpx.ConnectError):
        return APIConnectionError(
            None, f"tenfold server is not reachable at {url}; start it with `tenfold serve` ({exc or 'refused'})"
        )
    return APIConnectionError(None, f"the connection to the tenfold server at {url} failed: {type(exc).__name__}: {exc}")
