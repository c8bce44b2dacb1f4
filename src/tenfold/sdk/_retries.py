"""When the SDK retries a request, and how long it waits first. Pure functions; the clients loop.

Owns the policy:

- an answer ``429`` with ``error.code == "engine_overloaded"`` (the engine's queue is full; nothing ran) and
  an answer ``503`` that carries ``Retry-After`` (a deployment scaling up) are retried after
  ``min(Retry-After, 60)`` seconds, or an exponential backoff when a 429 has no ``Retry-After``;
- every other status is final: a spend-limit ``429`` (``spend_limit_exceeded``) would only fail again, and
  other 4xx need a different request;
- a transport failure is retried only when the request cannot have reached the server (nothing was sent:
  connect errors and timeouts, pool timeouts) or the method is idempotent (GET, HEAD, OPTIONS, PUT); a POST
  or DELETE whose connection broke after sending (e.g. a read timeout) is never sent twice.

At most ``max_retries`` retries per call. Does not own: sending or sleeping (the clients).
"""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime

import httpx

MAX_WAIT_SECONDS = 60.0
BACKOFF_FLOOR_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 8.0
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT"})
_NOTHING_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_NEVER = (httpx.LocalProtocolError, httpx.UnsupportedProtocol)  # the request itself is wrong


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff(retries_taken: int) -> float:
    """0.5 s, 1 s, 2 s, … capped at 8 s."""
    return min(BACKOFF_FLOOR_SECONDS * (2 ** retries_taken), BACKOFF_CAP_SECONDS)


def status_retry_delay(status: int, code: str | None, retry_after: float | None, retries_taken: int) -> float | None:
    """Seconds to wait before retrying an error answer, or None when it must not be retried."""
    if status == 429 and code == "engine_overloaded":
        return min(retry_after, MAX_WAIT_SECONDS) if retry_after is not None else backoff(retries_taken)
    if status == 503 and retry_after is not None:
        return min(retry_after, MAX_WAIT_SECONDS)
    return None


def transport_retry_delay(method: str, exc: Exception, retries_taken: int) -> float | None:
    """Seconds to wait before retrying after a transport failure, or None when it must not be retried."""
    if isinstance(exc, _NOTHING_SENT) or (isinstance(exc, httpx.TransportError)
                                         and not isinstance(exc, _NEVER)
                                         and method.upper() in IDEMPOTENT_METHODS):
        return backoff(retries_taken)
    return None


__all__ = ["parse_retry_after", "backoff", "status_retry_delay", "transport_retry_delay", "MAX_WAIT_SECONDS",
           "IDEMPOTENT_METHODS"]
