"""The description of one API call, and the resource base class that builds it.

Owns: ``RequestOptions`` (method, path, query, body, headers, per-call timeout, what to parse the answer
into, streaming, raw mode), the ``Resource`` base of every ``client.<noun>`` (holding the client,
``with_raw_response``, and ``_call``, which turns a verb's arguments into ``RequestOptions`` for the client
to execute), the checkpoint header names and small helpers resources share.

Building the description once is what lets one resource class serve both clients: with ``Tenfold`` a verb
returns its result, with ``AsyncTenfold`` the same verb returns an awaitable of it. Does not own: sending
(the clients) or any REST noun (``resources``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from typing_extensions import Self

    from tenfold.sdk._base_client import BaseClient

CHECKPOINT_HEADER = "X-Tenfold-Checkpoint"  # response: the checkpoint that served (absent for a final adapter)
EXPECTED_CHECKPOINT_HEADER = "X-Tenfold-Expected-Checkpoint"  # request: 409 unless this checkpoint serves


@dataclass(frozen=True)
class RequestOptions:
    method: str
    path: str  # under /v1 ("/files"), or a server-root path written "//health"
    cast_to: Any = None  # a pydantic model class, bytes, str, or None (no body expected)
    params: Mapping[str, Any] | None = None
    json: Any = None
    files: Any = None
    data: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None  # None: the client's timeout
    stream: bool = False  # answer is server-sent events of cast_to chunks
    raw: bool = False  # return the APIResponse instead of the parsed body


def segment(value: str) -> str:
    """One path segment, escaped (ids never contain ``/``, but a typo must not change the route)."""
    return quote(str(value), safe="")


def compact(values: Mapping[str, Any]) -> dict[str, Any]:
    """The items that are not None (None means "not given": the server's default applies)."""
    return {k: v for k, v in values.items() if v is not None}


class Resource:
    """Base of ``client.files``, ``client.fine_tuning.jobs``, …; subclasses add the verbs."""

    def __init__(self, client: BaseClient, *, raw: bool = False) -> None:
        self._client = client
        self._raw = raw

    @property
    def with_raw_response(self) -> Self:
        """This resource, but every call returns the raw ``APIResponse`` (``.headers``, ``.status_code``,
        ``.http_response``, ``.parse()``)."""
        return type(self)(self._client, raw=True)

    def _plain(self) -> Self:
        """This resource without raw mode (for helpers such as ``wait`` that read parsed answers)."""
        return type(self)(self._client) if self._raw else self

    def _call(self, method: str, path: str, cast_to: Any = None, *, params: Mapping[str, Any] | None = None,
              json: Any = None, files: Any = None, data: Any = None, headers: Mapping[str, str] | None = None,
              timeout_seconds: float | None = None, stream: bool = False) -> Any:
        return self._client._request(RequestOptions(
            method=method, path=path, cast_to=cast_to, params=params, json=json, files=files, data=data,
            headers=dict(headers or {}), timeout=timeout_seconds, stream=stream, raw=self._raw))


__all__ = ["RequestOptions", "Resource", "segment", "compact", "CHECKPOINT_HEADER", "EXPECTED_CHECKPOINT_HEADER"]
