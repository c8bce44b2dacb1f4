"""``GET /health`` (no auth), ``GET /v1/me`` (who am I) and ``GET /metrics`` (Prometheus text; admin key, since
labels name organizations)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tenfold import __version__
from tenfold.api.deps import Principal, ctx, principal
from tenfold.api.errors import APIError

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


@router.get("/metrics")
def metrics(p: Principal = Depends(principal)) -> Response:
    if not p.is_admin:
        raise APIError(403, "Metrics carry every organization's labels; scrape them with an admin key.",
                       code="admin_required")
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
