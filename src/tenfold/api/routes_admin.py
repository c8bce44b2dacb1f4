"""Admin resources: ``/v1/organizations`` and ``/v1/api_keys`` (admin keys only; a new key's secret is
returned once and stored hashed)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from tenfold import accounts
from tenfold.api.contract import errors
from tenfold.api.deps import admin, ctx
from tenfold.api.serialize import api_key_obj, organization_obj
from tenfold.context import Principal
from tenfold.types.admin import ApiKey, ApiKeyCreate, Organization, OrganizationCreate

router = APIRouter(prefix="/v1")


@router.post("/organizations", response_model=Organization, responses=errors(400, 401, 403))
def create_org(request: Request, body: OrganizationCreate, p: Principal = Depends(admin)) -> dict:
    return organization_obj(accounts.create_organization(ctx(request).db, p, name=body.name))


@router.post("/api_keys", response_model=ApiKey, responses=errors(400, 401, 403, 404))
def create_key(request: Request, body: ApiKeyCreate, p: Principal = Depends(admin)) -> dict:
    key = accounts.create_api_key(ctx(request).db, p, organization_id=body.organization_id, name=body.name,
                                  is_admin=body.is_admin)
    return api_key_obj(key)
