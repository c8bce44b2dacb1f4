"""Administration and identity: organizations, API keys, ``GET /v1/me`` and ``GET /health``.

Owns: ``Organization``, ``ApiKey`` (its secret ``key`` appears only in the create answer), ``Principal``
(who the key belongs to) and ``Health``. Does not own: spend limits (``tenfold.types.usage``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tenfold.types.common import ResponseModel
from tenfold.types.fields import Request


class Organization(ResponseModel):
    id: str
    object: Literal["organization"] = "organization"
    name: str
    created_at: int


class ApiKey(ResponseModel):
    id: str
    object: Literal["api_key"] = "api_key"
    organization_id: str
    name: str
    is_admin: bool
    created_at: int
    key: str | None = Field(default=None, description="the secret (tf-…), shown only once, when created")
    note: str | None = None


class Principal(ResponseModel):
    """The caller, as the API key identifies it."""

    object: Literal["principal"] = "principal"
    organization_id: str
    api_key_id: str
    is_admin: bool


class Health(ResponseModel):
    status: Literal["ok", "starting"]
    base_model: str
    version: str


__all__ = ["Organization", "ApiKey", "Principal", "Health"]


class OrganizationCreate(Request):
    name: str = Field(min_length=1, max_length=200)


class ApiKeyCreate(Request):
    organization_id: str | None = Field(default=None, description="Default: the caller's organization.")
    name: str = Field(default="", max_length=200)
    is_admin: bool = False
