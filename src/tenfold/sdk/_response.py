"""Raw responses (``with_raw_response``) and parsing an answer into what a call returns.

Owns: ``APIResponse`` — ``.headers``, ``.status_code``, ``.http_response``, ``.checkpoint`` and ``.parse()``
(the model, bytes or text, or for ``stream=True`` a ``Stream``/``AsyncStream``), as in the openai SDK — and
``parse_body``, which validates a JSON answer into its ``tenfold.types`` model. Does not own: sending or
error answers (the clients raise before a response gets here).
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import httpx

from tenfold.sdk._request import CHECKPOINT_HEADER, RequestOptions
from tenfold.sdk._streaming import AsyncStream, Stream
from tenfold.sdk.errors import TenfoldError, validate

T = TypeVar("T")
_UNPARSED: Any = object()


def parse_body(cast_to: Any, response: httpx.Response) -> Any:
    """A finished (read) 2xx answer → ``cast_to``: bytes, str, None, or a pydantic model of the JSON."""
    if cast_to is bytes:
        return response.content
    if cast_to is str:
        return response.text
    if cast_to is None:
        return None
    where = f"{response.request.method} {response.request.url.path}"
    try:
        body = response.json()
    except ValueError as exc:
        raise TenfoldError(response.status_code, f"the server answered {where} with something that is not JSON: "
                                                 f"{response.text[:200]!r}", response=response) from exc
    return validate(cast_to, body, where=where, status=response.status_code, response=response)


class APIResponse(Generic[T]):
    """What ``client.<resource>.with_raw_response.<verb>(...)`` returns (``await`` it with ``AsyncTenfold``)."""

    def __init__(self, http_response: httpx.Response, options: RequestOptions, *, url: str, is_async: bool,
                 retries_taken: int = 0) -> None:
        self.http_response = http_response
        self.retries_taken = retries_taken
        self._options = options
        self._url = url
        self._is_async = is_async
        self._parsed: Any = _UNPARSED

    @property
    def headers(self) -> httpx.Headers:
        return self.http_response.headers

    @property
    def status_code(self) -> int:
        return self.http_response.status_code

    @property
    def http_request(self) -> httpx.Request:
        return self.http_response.request

    @property
    def url(self) -> httpx.URL:
        return self.http_response.request.url

    @property
    def checkpoint(self) -> str | None:
        """``X-Tenfold-Checkpoint``: the checkpoint that served an inference call (None for a final adapter)."""
        return self.headers.get(CHECKPOINT_HEADER)

    @property
    def content(self) -> bytes:
        """The body (not for a streaming call: parse it and iterate instead)."""
        return self.http_response.content

    @property
    def text(self) -> str:
        return self.http_response.text

    def json(self) -> Any:
        return self.http_response.json()

    def parse(self) -> T:
        """The parsed answer, as the call without ``with_raw_response`` returns it (computed once)."""
        if self._parsed is _UNPARSED:
            opts = self._options
            if opts.stream:
                cls = AsyncStream if self._is_async else Stream
                self._parsed = cls(cast_to=opts.cast_to, response=self.http_response, url=self._url)
            else:
                self._parsed = parse_body(opts.cast_to, self.http_response)
        return self._parsed

    def __repr__(self) -> str:
        req = self.http_response.request
        return f"<APIResponse [{self.status_code}] {req.method} {req.url.path}>"


__all__ = ["APIResponse", "parse_body"]
