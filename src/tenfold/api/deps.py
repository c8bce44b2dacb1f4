"""Request dependencies: the server context, the authenticated principal and list pagination.

Owns: reading the ``Authorization`` header and handing it to ``tenfold.accounts.authenticate``, the
admin-only dependency, and the ``limit``/``after`` query parameters with the OpenAI list envelope.
Ownership checks live in the services and store, which always filter by the principal's organization.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Depends, Query, Request, Security
from fastapi.security import HTTPAuthorizationCredentials
from starlette.concurrency import run_in_threadpool

from tenfold import accounts
from tenfold.api.contract import bearer
from tenfold.context import Principal, ServerContext


def ctx(request: Request) -> ServerContext:
    return request.app.state.ctx


async def principal(request: Request, _scheme: HTTPAuthorizationCredentials | None = Security(bearer)
                    ) -> Principal:
    """The caller, from ``Authorization: Bearer tf-…`` (the key lookup runs off the event loop). ``_scheme``
    only declares the security scheme in the OpenAPI document; the header is read as sent."""
    return await run_in_threadpool(accounts.authenticate, ctx(request).db, request.headers.get("authorization"))


def admin(p: Principal = Depends(principal)) -> Principal:
    accounts.require_admin(p)
    return p


@dataclass(frozen=True)
class PageParams:
    limit: int
    after: str | None


def page_params(limit: int = Query(20, ge=1, le=100, description="How many objects to return (1-100)."),
                after: str | None = Query(None, description="Return objects after this id (from `last_id`).")
                ) -> PageParams:
    return PageParams(limit=limit, after=after)


def list_body(data: list[dict], has_more: bool) -> dict:
    return {"object": "list", "data": data, "has_more": has_more,
            "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None}
