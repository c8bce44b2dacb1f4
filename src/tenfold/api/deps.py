"""Request dependencies: the server context (settings, database, engine, artifacts) and authentication.

Owns: turning ``Authorization: Bearer tf-…`` into a ``Principal`` (organization, key, admin flag), and
list pagination parameters. Ownership checks live in the repo functions, which always filter by the
principal's organization, so another organization's resource is indistinguishable from a missing one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Query, Request

from tenfold.api.errors import APIError
from tenfold.store import repo

if TYPE_CHECKING:
    from tenfold.artifacts.storage import ArtifactStore
    from tenfold.billing.meter import Meter
    from tenfold.config import Settings
    from tenfold.engine.types import Engine
    from tenfold.store.db import Database


@dataclass
class ServerContext:
    settings: Settings
    db: Database
    artifacts: ArtifactStore
    meter: Meter
    engine: Engine | None = None


@dataclass(frozen=True)
class Principal:
    organization_id: str
    api_key_id: str
    is_admin: bool


def ctx(request: Request) -> ServerContext:
    return request.app.state.ctx


def principal(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if not header:
        raise APIError(401, "Missing API key. Send 'Authorization: Bearer tf-…' (the admin key is in "
                            "$TENFOLD_HOME/admin_key; `tenfold login --api-key …` stores it for the CLI).",
                       code="missing_api_key")
    if scheme.lower() != "bearer" or not secret.strip():
        raise APIError(401, "Malformed Authorization header: expected 'Bearer tf-…'.", code="invalid_api_key")
    with ctx(request).db.session() as s:
        key = repo.find_api_key(s, secret=secret.strip())
        if key is None:
            raise APIError(401, "Invalid API key. Check the key, or create one with `tenfold keys create`.",
                           code="invalid_api_key")
        return Principal(organization_id=key.organization_id, api_key_id=key.id, is_admin=key.is_admin)


@dataclass(frozen=True)
class PageParams:
    limit: int
    after: str | None


def page_params(limit: int = Query(20, ge=1, le=100), after: str | None = Query(None)) -> PageParams:
    return PageParams(limit=limit, after=after)


def list_body(data: list[dict], has_more: bool) -> dict:
    return {"object": "list", "data": data, "has_more": has_more,
            "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None}
