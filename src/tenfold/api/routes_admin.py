"""Admin resources: ``/v1/organizations`` and ``/v1/api_keys`` (admin keys only; a new key's secret is
returned once and stored hashed)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from tenfold.api.deps import Principal, ctx, principal
from tenfold.api.errors import APIError, not_found
from tenfold.store import repo

router = APIRouter(prefix="/v1")


class OrgCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    organization_id: str | None = None  # default: the caller's organization
    name: str = ""
    is_admin: bool = False


def _admin(p: Principal = Depends(principal)) -> Principal:
    if not p.is_admin:
        raise APIError(403, "This needs an admin API key.", code="admin_required")
    return p


@router.post("/organizations")
def create_org(request: Request, body: OrgCreate, p: Principal = Depends(_admin)) -> dict:
    with ctx(request).db.session() as s:
        org = repo.create_organization(s, name=body.name)
        return {"id": org.id, "object": "organization", "name": org.name, "created_at": int(org.created_at)}


@router.post("/api_keys")
def create_key(request: Request, body: KeyCreate, p: Principal = Depends(_admin)) -> dict:
    org_id = body.organization_id or p.organization_id
    with ctx(request).db.session() as s:
        if not repo.get_organization(s, organization_id=org_id):
            raise not_found("organization", org_id)
        row, secret = repo.create_api_key(s, organization_id=org_id, name=body.name, is_admin=body.is_admin)
        return {"id": row.id, "object": "api_key", "organization_id": org_id, "name": row.name,
                "is_admin": row.is_admin, "created_at": int(row.created_at), "key": secret,
                "note": "The key is shown only once; store it now."}
