"""Shapes shared by every resource: the response base class, errors, list pages and deletion answers.

Owns: ``ResponseModel`` (extra fields allowed, so an older client tolerates a newer server), the OpenAI
error body ``{"error": {message, type, param, code}}``, the list page ``{"object": "list", "data",
"has_more", "first_id", "last_id"}`` and ``{"id", "object", "deleted"}``. Does not own: request bodies
(``tenfold.types.inference``, ``tenfold.types.fine_tuning``) or any resource's own shape.
"""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field


class ResponseModel(BaseModel):
    """Base of every response model: unknown fields are kept (``model_extra``), never rejected."""

    model_config = ConfigDict(extra="allow")


class ErrorObject(ResponseModel):
    message: str
    type: str = Field(description="invalid_request_error, authentication_error, permission_error, "
                                  "not_found_error, conflict_error, rate_limit_error, service_unavailable, api_error")
    param: str | None = None
    code: str | None = None


class ErrorResponse(ResponseModel):
    """Every non-2xx answer of the API (never a bare 422)."""

    error: ErrorObject


T = TypeVar("T")


class ListResponse(ResponseModel, Generic[T]):
    """One page of a list, newest first unless the route says otherwise; pass ``last_id`` as ``after``."""

    object: Literal["list"] = "list"
    data: list[T]
    has_more: bool = False
    first_id: str | None = None
    last_id: str | None = None


class Deleted(ResponseModel):
    """The answer to a DELETE: ``{"id", "object": "file" | "adapter", "deleted": true}``."""

    id: str
    object: str
    deleted: bool


__all__ = ["ResponseModel", "ErrorObject", "ErrorResponse", "ListResponse", "Deleted"]
