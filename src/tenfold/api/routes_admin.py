"""Admin resources: ``/v1/organizations`` and ``/v1/api_keys`` (admin keys only; a new key's secret is
returned once and stored hashed)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from tenfold import accounts
from tenfold.api.deps import admin, ctx
from tenfold.api.serialize import api_key_obj, organization_obj
from tenfold.context import Principal

router = APIRouter(prefix="/v1")


class OrgCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    organization_id: str | None = None  # default: the caller's organization
    name: str = Field(default="", max_length=200)
    is_admin: bool = False


@router.post("/organizations")
def create_org(request: Request, body: OrgCreate, p: Principal = Depends(admin)) -> dict:
    return organization_obj(accounts.create_organization(ctx(request).db, p, name=body.name))


@router.post("/api_keys")
def create_key(request: Request, body: KeyCreate, p: Principal = Depends(admin)) -> dict:
    key = accounts.create_api_key(ctx(request).db, p, organization_id=body.organization_id, name=body.name,
                                  is_admin=body.is_admin)
    return api_key_obj(key)
