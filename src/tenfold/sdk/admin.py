"""Admin resources of the SDK: ``/v1/organizations`` and ``/v1/api_keys`` (need an admin key)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tenfold.sdk.client import Tenfold


class Organizations:
    def __init__(self, client: Tenfold) -> None:
        self._client = client

    def create(self, name: str) -> dict[str, Any]:
        return self._client.request("POST", "/organizations", json={"name": name})


class ApiKeys:
    def __init__(self, client: Tenfold) -> None:
        self._client = client

    def create(self, *, organization_id: str | None = None, name: str = "", is_admin: bool = False) -> dict[str, Any]:
        """The answer's ``key`` is the secret, shown only this once."""
        return self._client.request("POST", "/api_keys", json={"organization_id": organization_id, "name": name,
                                                                "is_admin": is_admin})
