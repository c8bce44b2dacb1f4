"""Domain errors: what a service raises when a request cannot be done, with no HTTP in them.

Owns: the error kinds (invalid request, not authenticated, not allowed, not found, conflict, too large, rate
limited, unavailable), each with a message that says what to do instead, an optional machine ``code`` and
the ``param`` it concerns; ``retry_after`` (seconds) on the kinds a client may retry. Does not own: status
codes or the OpenAI error shape (``tenfold.api.errors`` maps these kinds once for HTTP and for batch lines).
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base of every error a service raises for a request it cannot do."""

    default_code: str | None = None

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code if code is not None else self.default_code
        self.param = param


class InvalidRequest(ServiceError):
    """The request is malformed or asks for something that cannot be served as given."""


class Unauthenticated(ServiceError):
    """No credentials, or credentials nobody issued."""


class PermissionDenied(ServiceError):
    """The caller is known but may not do this (e.g. an admin-only action)."""


class NotFound(ServiceError):
    """No such resource, or one the caller's organization cannot see (the two are indistinguishable)."""


class Conflict(ServiceError):
    """The resource's state forbids the action now (an unfinished job, a checkpoint pin that differs)."""


class TooLarge(ServiceError):
    """The payload exceeds a configured limit."""


class _Retryable(ServiceError):
    def __init__(self, message: str, *, code: str | None = None, param: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message, code=code, param=param)
        self.retry_after = retry_after


class RateLimited(_Retryable):
    """Too much at once (an engine queue that is full, a spend limit reached); ``retry_after`` says when."""


class Unavailable(_Retryable):
    """The capacity that would serve this is not there right now; ``retry_after`` says when to retry."""


def not_found(kind: str, ident: str, *, hint: str = "", param: str | None = None) -> NotFound:
    """``No <kind> with id '<ident>' was found.`` plus a hint, with code ``<kind>_not_found``."""
    message = f"No {kind} with id '{ident}' was found."
    return NotFound(message + (" " + hint if hint else ""), code=f"{kind.replace(' ', '_').replace('-', '_')}_not_found",
                    param=param)
