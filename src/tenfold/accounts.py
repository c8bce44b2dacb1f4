"""Organizations, API keys and authentication.

Owns: turning a bearer secret into a ``Principal`` (``authenticate``; keys are stored hashed), the admin
check, creating organizations and keys (admins only; a new key's secret is returned once), and the first
start's default organization and admin key (``bootstrap_admin``). Does not own: reading the
``Authorization`` header (the api) or scoping queries (the store filters by organization).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tenfold.context import Principal
from tenfold.errors import PermissionDenied, Unauthenticated, not_found
from tenfold.store import repo
from tenfold.store.db import Database
from tenfold.store.tables import ApiKey, Organization


def authenticate(db: Database, authorization: str | None) -> Principal:
    """The principal of an ``Authorization: Bearer tf-…`` header value; ``Unauthenticated`` otherwise."""
    header = authorization or ""
    scheme, _, secret = header.partition(" ")
    if not header:
        raise Unauthenticated("Missing API key. Send 'Authorization: Bearer tf-…' (the admin key is in "
                              "$TENFOLD_HOME/admin_key; `tenfold login --api-key …` stores it for the CLI).",
                              code="missing_api_key")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthenticated("Malformed Authorization header: expected 'Bearer tf-…'.", code="invalid_api_key")
    with db.session() as s:
        key = repo.find_api_key(s, secret=secret.strip())
    if key is None:
        raise Unauthenticated("Invalid API key. Check the key, or create one with `tenfold keys create`.",
                              code="invalid_api_key")
    return Principal(organization_id=key.organization_id, api_key_id=key.id, is_admin=key.is_admin)


def require_admin(p: Principal, what: str = "This") -> None:
    if not p.is_admin:
        raise PermissionDenied(f"{what} needs an admin API key.", code="admin_required")


def create_organization(db: Database, p: Principal, *, name: str) -> Organization:
    require_admin(p)
    with db.session() as s:
        return repo.create_organization(s, name=name)


@dataclass(frozen=True)
class NewKey:
    row: ApiKey
    secret: str  # shown once


def create_api_key(db: Database, p: Principal, *, organization_id: str | None, name: str, is_admin: bool) -> NewKey:
    """A key for ``organization_id`` (default: the caller's)."""
    require_admin(p)
    org_id = organization_id or p.organization_id
    with db.session() as s:
        if not repo.get_organization(s, organization_id=org_id):
            raise not_found("organization", org_id, param="organization_id")
        row, secret = repo.create_api_key(s, organization_id=org_id, name=name, is_admin=is_admin)
    return NewKey(row, secret)


def bootstrap_admin(db: Database, *, admin_key_path: Path) -> str | None:
    """On first start (no organization yet) create the default organization and an admin key, save the
    secret to ``admin_key_path`` (mode 0600) and return it; None on later starts."""
    with db.session() as s:
        if repo.count_organizations(s):
            return None
        org = repo.create_organization(s, name="default")
        _row, secret = repo.create_api_key(s, organization_id=org.id, name="admin", is_admin=True)
        fd = os.open(admin_key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secret + "\n")
        os.chmod(admin_key_path, 0o600)
    return secret
