"""``GET /health`` (no auth), ``GET /v1/me`` (who am I) and ``GET /metrics`` (Prometheus text; admin key, since
labels name organizations)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tenfold import accounts
from tenfold.api.contract import errors, text_body
from tenfold.api.deps import ctx, principal
from tenfold.context import Principal
from tenfold.types.admin import Health
from tenfold.types.admin import Principal as PrincipalObject
from tenfold.version import __version__

router = APIRouter()


@router.get("/health", response_model=Health)
def health(request: Request) -> dict:
    return {"status": "ok" if getattr(request.app.state, "ready", False) else "starting",
            "base_model": ctx(request).settings.base_model, "version": __version__}


@router.get("/v1/me", response_model=PrincipalObject, responses=errors(401))
def me(p: Principal = Depends(principal)) -> dict:
    return {"object": "principal", "organization_id": p.organization_id, "api_key_id": p.api_key_id,
            "is_admin": p.is_admin}


@router.get("/metrics", response_class=Response,
            responses={**text_body("text/plain", "Prometheus metrics (text exposition format)."), **errors(401, 403)})
def metrics(p: Principal = Depends(principal)) -> Response:
    accounts.require_admin(p, "Metrics carry every organization's labels; scraping them")
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
