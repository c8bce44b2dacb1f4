"""Administration: ``client.organizations`` (with ``.spend_limit``) and ``client.api_keys``.

Owns: creating an organization (``POST /v1/organizations``, admin key), reading or setting its monthly spend
limit (``/v1/organizations/{id}/spend_limit``; any key may read its own organization's, only an admin key
may set one) and creating API keys (``POST /v1/api_keys``, admin key; the answer's ``key`` is the secret,
shown only this once — the server stores it hashed). Does not own: enforcing limits (the server answers
429 ``spend_limit_exceeded``).
"""

from __future__ import annotations

from typing import Any

from tenfold.sdk._request import Resource, segment
from tenfold.types.admin import ApiKey, Organization
from tenfold.types.usage import SpendLimit


def _path(organization_id: str) -> str:
    return f"/organizations/{segment(organization_id)}/spend_limit"


class SpendLimits(Resource):
    def retrieve(self, organization_id: str, *, timeout_seconds: float | None = None) -> SpendLimit:
        """The limit and what was spent this calendar month (UTC), in micro-dollars and dollars."""
        return self._call("GET", _path(organization_id), SpendLimit, timeout_seconds=timeout_seconds)

    def update(self, organization_id: str, *, monthly_spend_limit_usd: str | int | None,
               timeout_seconds: float | None = None) -> SpendLimit:
        """Admin: set the monthly limit in dollars (a decimal string such as ``"100.00"``), or None to remove
        it. Requests over the limit answer 429 ``spend_limit_exceeded``."""
        return self._call("PUT", _path(organization_id), SpendLimit, timeout_seconds=timeout_seconds,
                          json={"monthly_spend_limit_usd": monthly_spend_limit_usd})


class Organizations(Resource):
    def __init__(self, client: Any, *, raw: bool = False) -> None:
        super().__init__(client, raw=raw)
        self.spend_limit = SpendLimits(client, raw=raw)

    def create(self, *, name: str, timeout_seconds: float | None = None) -> Organization:
        """Admin: a new organization; give it a key with ``client.api_keys.create(organization_id=…)``."""
        return self._call("POST", "/organizations", Organization, json={"name": name},
                          timeout_seconds=timeout_seconds)


class ApiKeys(Resource):
    def create(self, *, organization_id: str | None = None, name: str = "", is_admin: bool = False,
               timeout_seconds: float | None = None) -> ApiKey:
        """A key for ``organization_id`` (default: the caller's); ``is_admin`` for an admin key."""
        return self._call("POST", "/api_keys", ApiKey, timeout_seconds=timeout_seconds,
                          json={"organization_id": organization_id, "name": name, "is_admin": is_admin})


__all__ = ["Organizations", "SpendLimits", "ApiKeys"]
