"""``GET /health`` (no auth) and ``GET /v1/me`` (who am I)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from tenfold import __version__
from tenfold.api.deps import Principal, ctx, principal

router = APIRouter()


@router.get("/health")
def health(request: Request) -> dict:
    c = ctx(request)
    return {"status": "ok" if getattr(request.app.state, "ready", False) else "starting",
            "base_model": c.settings.base_model, "version": __version__}


@router.get("/v1/me")
def me(p: Principal = Depends(principal)) -> dict:
    return {"object": "principal", "organization_id": p.organization_id, "api_key_id": p.api_key_id,
            "is_admin": p.is_admin}
