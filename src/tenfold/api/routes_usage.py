"""``GET /v1/usage``: the caller's organization's usage ledger, newest first."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from tenfold.api.deps import PageParams, Principal, ctx, list_body, page_params, principal
from tenfold.api.serialize import usage_obj
from tenfold.store import repo

router = APIRouter(prefix="/v1/usage")


@router.get("")
def list_usage(request: Request, model: str | None = None, page: PageParams = Depends(page_params),
               p: Principal = Depends(principal)) -> dict:
    with ctx(request).db.session() as s:
        rows, more = repo.list_usage(s, organization_id=p.organization_id, limit=page.limit, after=page.after,
                                     model=model)
        return list_body([usage_obj(r) for r in rows], more)
