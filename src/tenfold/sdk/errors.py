"""Exceptions raised by the tenfold SDK.

Owns: the error hierarchy (one class per HTTP status the API uses, plus connection and timeout errors),
turning an HTTP error answer (OpenAI shape ``{"error": {"message", "type", "param", "code"}}``) or a
transport failure into the right exception, and ``validate``: an answer that does not match its
``tenfold.types`` model (a missing field, an unknown enum value; unknown extra fields are fine) becomes a
``TenfoldError`` saying the SDK may be older than the server. Does not own: deciding whether to retry
(``_retries``) or rendering errors for humans (``tenfold.cli.output``).
"""

from __future__ import annotations

from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from tenfold.sdk._retries import parse_retry_after

M = TypeVar("M", bound=BaseModel)


class TenfoldError(Exception):
    """Any error from the tenfold API or from reaching it.

    ``status`` is the HTTP status (``None`` when no HTTP answer came, or when a stream failed midway);
    ``type``, ``code`` and ``param`` come from the error body; ``retry_after`` (seconds) from the
    ``Retry-After`` header; ``response`` is the ``httpx.Response`` when there was one.
    """

    def __init__(self, status: int | None, message: str, type: str | None = None, code: str | None = None,
                 param: str | None = None, *, retry_after: float | None = None,
                 response: httpx.Response | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.retry_after = retry_after
        self.response = response

    @property
    def status_code(self) -> int | None:
        """The openai SDK's name for ``status``."""
        return self.status

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, message={self.message!r}, code={self.code!r})"


class APIStatusError(TenfoldError):
    """The server answered with an error status (the class of any status without its own class below)."""


class BadRequestError(APIStatusError):
    """400: the request was invalid; the message says what to change."""


class AuthenticationError(APIStatusError):
    """401: no API key, or an unknown or revoked one."""


class PermissionDeniedError(APIStatusError):
    """403: the key may not do this (e.g. an admin-only action)."""


class NotFoundError(APIStatusError):
    """404: not found, or not visible to the caller's organization."""


class ConflictError(APIStatusError):
    """409: e.g. deploying an unfinished job, or a checkpoint pin that does not match what is live."""


class PayloadTooLargeError(APIStatusError):
    """413: e.g. an upload over the server's ``TENFOLD_MAX_UPLOAD_BYTES``."""


class RateLimitError(APIStatusError):
    """429: slow down (``engine_overloaded``, retried automatically) or over the monthly spend limit
    (``spend_limit_exceeded``, never retried); ``retry_after`` says for how long."""


class InternalServerError(APIStatusError):
    """500 (and other 5xx but 503): the server failed; its logs have the details."""


class ServiceUnavailableError(APIStatusError):
    """503: e.g. ``DEPLOYMENT_SCALING_UP``; retried automatically after ``retry_after`` seconds."""


class APIConnectionError(TenfoldError):
    """The server could not be reached, or the connection broke before the answer was complete."""


class APITimeoutError(APIConnectionError):
    """The server did not answer within the timeout."""


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError, 401: AuthenticationError, 403: PermissionDeniedError, 404: NotFoundError,
    409: ConflictError, 413: PayloadTooLargeError, 422: BadRequestError, 429: RateLimitError,
    500: InternalServerError, 503: ServiceUnavailableError,
}


def error_class(status: int) -> type[APIStatusError]:
    return _BY_STATUS.get(status) or (InternalServerError if status >= 500 else APIStatusError)


def error_from_body(status: int | None, body: Any, *, retry_after: float | None = None,
                    response: httpx.Response | None = None) -> TenfoldError:
    """The exception for an error body (decoded JSON or raw text); ``status=None`` for a failure reported
    inside a stream that had started with 200."""
    cls: type[TenfoldError] = error_class(status) if status is not None else TenfoldError
    label = f"HTTP {status}" if status is not None else "stream error"
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return cls(status, str(err.get("message") or label), err.get("type"), err.get("code"), err.get("param"),
                   retry_after=retry_after, response=response)
    if isinstance(body, dict) and "detail" in body:  # a framework default slipped through
        return cls(status, f"{label}: {body['detail']}", retry_after=retry_after, response=response)
    text = body.strip() if isinstance(body, str) else ""
    return cls(status, f"{label}: {text[:500]}" if text else label, retry_after=retry_after, response=response)


def error_from_response(response: httpx.Response) -> TenfoldError:
    """Read an error answer (its body must already be loaded) into an exception."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    return error_from_body(response.status_code, body, response=response,
                           retry_after=parse_retry_after(response.headers.get("retry-after")))


def connection_error(url: str, exc: Exception, timeout: float | None = None) -> TenfoldError:
    """The error for a transport failure talking to the server at ``url``."""
    if isinstance(exc, httpx.TimeoutException):
        after = f" after {timeout:g}s" if timeout else ""
        return APITimeoutError(None, f"request to the tenfold server at {url} timed out{after}")
    if isinstance(exc, httpx.LocalProtocolError):  # we could not even form the request (e.g. a bad header)
        return TenfoldError(None, f"could not send the request to {url}: {exc}")
    if isinstance(exc, httpx.ConnectError):
        return APIConnectionError(
            None, f"tenfold server is not reachable at {url}; start it with `tenfold serve` ({exc or 'refused'})")
    return APIConnectionError(None, f"the connection to the tenfold server at {url} failed: "
                                    f"{type(exc).__name__}: {exc}")


def validate(cls: type[M], body: Any, *, where: str, status: int | None = None,
             response: httpx.Response | None = None) -> M:
    """``cls.model_validate(body)``, with a mismatch reported as a ``TenfoldError`` naming ``where``."""
    try:
        return cls.model_validate(body)
    except ValidationError as exc:
        raise TenfoldError(status, f"the server's answer to {where} does not match {cls.__name__} (is this SDK "
                                   f"older than the server?): {exc}", response=response) from exc


__all__ = ["TenfoldError", "APIStatusError", "BadRequestError", "AuthenticationError", "PermissionDeniedError",
           "NotFoundError", "ConflictError", "PayloadTooLargeError", "RateLimitError", "InternalServerError",
           "ServiceUnavailableError", "APIConnectionError", "APITimeoutError", "error_from_body",
           "error_from_response", "connection_error", "error_class", "validate"]
