"""The tenfold Python client: ``Tenfold(base_url=None, api_key=None, timeout=60.0)``.

Owns: credential resolution (via ``tenfold.sdk.credentials``), the one ``httpx.Client``, sending a request
and turning failures into ``TenfoldError``s, and the resource attributes (``files``, ``jobs``,
``adapters``, ``batches``) plus the small top-level calls (``chat``, ``completions``, ``models``, ``usage``,
``usage_summary``, ``usage_export``, ``health``, ``me``). Does not own: the shape of each REST noun (one
module per noun) or any server code.
"""

from __future__ import annotations

from typing import Any

import httpx

from tenfold.sdk.adapters import Adapters
from tenfold.sdk.admin import ApiKeys, Organizations
from tenfold.sdk.batches import Batches
from tenfold.sdk.credentials import resolve
from tenfold.sdk.errors import AuthenticationError, connection_error, error_from_response
from tenfold.sdk.files import Files
from tenfold.sdk.inference import ChatResult, ChatStream, CompletionResult, chat, completions
from tenfold.sdk.jobs import Jobs

# httpx's "use the client default" sentinel for a per-request timeout.
_UNSET_TIMEOUT: Any = httpx.USE_CLIENT_DEFAULT


class Tenfold:
    """A client for one tenfold server. ``base_url`` may end in ``/v1`` or not."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        resolved = resolve(base_url, api_key)
        self.root_url: str = resolved.base_url
        self.base_url: str = resolved.base_url + "/v1"
        self.api_key: str | None = resolved.api_key
        self.api_key_source: str | None = resolved.api_key_source
        self.timeout = timeout
        headers = {"User-Agent": "tenfold-sdk"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        self._http = httpx.Client(headers=headers, timeout=timeout, transport=transport)
        self.files = Files(self)
        self.jobs = Jobs(self)
        self.adapters = Adapters(self)
        self.organizations = Organizations(self)
        self.api_keys = ApiKeys(self)
        self.batches = Batches(self)

    # -- plumbing -------------------------------------------------------------------------------
    def url(self, path: str) -> str:
        """``/files`` → ``<root>/v1/files``; paths starting with ``//`` are server-root paths (``//health``)."""
        if path.startswith("//"):
            return self.root_url + path[1:]
        return self.base_url + path

    def send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        files: Any = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        """Send one request; raise a ``TenfoldError`` for any non-2xx answer or transport failure."""
        url = self.url(path)
        if params:
            params = {k: v for k, v in params.items() if v is not None}
        request = self._http.build_request(
            method,
            url,
            json=json,
            params=params or None,
            files=files,
            data=data,
            headers=headers,
            timeout=timeout if timeout is not None else _UNSET_TIMEOUT,
        )
        try:
            response = self._http.send(request, stream=stream)
        except httpx.TransportError as exc:
            raise connection_error(self.root_url, exc, timeout or self.timeout) from exc
        if response.status_code >= 400:
            try:
                response.read()
            finally:
                response.close()
            err = error_from_response(response)
            if isinstance(err, AuthenticationError) and not self.api_key and "tenfold login" not in err.message:
                err.message = (
                    f"{err.message} (no API key configured: set TENFOLD_API_KEY or run `tenfold login`)"
                )
            raise err
        return response

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send and decode the JSON answer."""
        response = self.send(method, path, **kwargs)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise error_from_response(response) from exc

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Tenfold:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- top-level calls --------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """``GET /health`` (no auth): ``{"status", "base_model", "version"}``."""
        return self.request("GET", "//health")

    def me(self) -> dict[str, Any]:
        """``GET /v1/me``: ``{"organization_id", "api_key_id", "is_admin"}``; checks the key."""
        return self.request("GET", "/me")

    def models(self) -> dict[str, Any]:
        """``GET /v1/models``: the list envelope of base models and the caller's deployed adapters."""
        return self.request("GET", "/models")

    def usage(self, limit: int = 20, after: str | None = None, model: str | None = None) -> dict[str, Any]:
        """``GET /v1/usage``: the list envelope of usage records, newest first."""
        return self.request("GET", "/usage", params={"limit": limit, "after": after, "model": model})

    def usage_summary(self, start_time: str | int, end_time: str | int | None = None, *, bucket_width: str = "1d",
                      group_by: list[str] | None = None, **filters: list[str]) -> dict[str, Any]:
        """``GET /v1/usage?start_time=…``: buckets of aggregated usage plus exact ``totals``."""
        params: dict[str, Any] = {"start_time": start_time, "end_time": end_time, "bucket_width": bucket_width}
        if group_by:
            params["group_by"] = ",".join(group_by)
        params.update({k: ",".join(v) for k, v in filters.items() if v})
        return self.request("GET", "/usage", params=params)

    def usage_export(self, start_time: str | int, end_time: str | int) -> str:
        """``GET /v1/usage/export``: the billing CSV for ``[start_time, end_time)`` (at most 31 days)."""
        return self.send("GET", "/usage/export", params={"start_time": start_time, "end_time": end_time}).text

    def spend_limit(self, organization_id: str) -> dict[str, Any]:
        return self.request("GET", f"/organizations/{organization_id}/spend_limit")

    def set_spend_limit(self, organization_id: str, usd: str | None) -> dict[str, Any]:
        """Admin: set the monthly spend limit in dollars (a decimal string, e.g. ``"100.00"``) or None."""
        return self.request("PUT", f"/organizations/{organization_id}/spend_limit",
                            json={"monthly_spend_limit_usd": usd})

    def chat(
        self,
        model: str,
        messages: list[dict[str, Any]],
        *,
        max_tokens: int = 512,
        temperature: float = 0.0,
        top_p: float | None = None,
        stop: str | list[str] | None = None,
        seed: int | None = None,
        expected_checkpoint: str | None = None,
        stream: bool = False,
        timeout_seconds: float | None = None,
    ) -> ChatResult | ChatStream:
        """``POST /v1/chat/completions``. ``stream=True`` returns a ``ChatStream``: iterate it for text
        deltas; afterwards it carries ``content``, ``usage`` and ``checkpoint`` like a ``ChatResult``."""
        return chat(
            self, model, messages, max_tokens=max_tokens, temperature=temperature, top_p=top_p, stop=stop,
            seed=seed, expected_checkpoint=expected_checkpoint, stream=stream, timeout_seconds=timeout_seconds,
        )

    def completions(
        self,
        model: str,
        prompt: str,
        *,
        max_tokens: int = 512,
        temperature: float = 0.0,
        top_p: float | None = None,
        stop: str | list[str] | None = None,
        seed: int | None = None,
        expected_checkpoint: str | None = None,
        stream: bool = False,
        timeout_seconds: float | None = None,
    ) -> CompletionResult | ChatStream:
        """``POST /v1/completions`` (raw prompt, no chat template); same result types as ``chat``."""
        return completions(
            self, model, prompt, max_tokens=max_tokens, temperature=temperature, top_p=top_p, stop=stop,
            seed=seed, expected_checkpoint=expected_checkpoint, stream=stream, timeout_seconds=timeout_seconds,
        )


__all__ = ["Tenfold", "ChatResult", "ChatStream", "CompletionResult"]
