"""Every failure as an OpenAI-shaped error ``{"error": {"message", "type", "param", "code"}}``: the one
mapping from domain errors (``tenfold.errors``) to HTTP status codes, and the handlers that render ours,
FastAPI's validation errors (400, never a bare 422), unknown routes and methods, and crashes.

Owns: status codes, error types, ``Retry-After`` and ``render`` (also handed to the batch runner, so a
failed batch line carries the status and body the same request would have got over HTTP).
"""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route

from tenfold.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServiceError,
    TooLarge,
    Unauthenticated,
    Unavailable,
)
from tenfold.types.fields import describe

log = logging.getLogger("tenfold.api")

STATUS: dict[type[ServiceError], int] = {
    InvalidRequest: 400, Unauthenticated: 401, PermissionDenied: 403, NotFound: 404, Conflict: 409, TooLarge: 413,
    RateLimited: 429, Unavailable: 503,
}
TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
    405: "invalid_request_error", 409: "conflict_error", 413: "invalid_request_error", 429: "rate_limit_error",
    500: "api_error", 503: "service_unavailable",
}


def status_of(exc: ServiceError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_body(status: int, message: str, *, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": TYPES.get(status, "api_error"), "param": param, "code": code}}


def render(exc: ServiceError) -> tuple[int, dict]:
    """``(status, OpenAI error body)`` of a domain error."""
    status = status_of(exc)
    return status, error_body(status, exc.message, code=exc.code, param=exc.param)


def _headers(exc: ServiceError) -> dict[str, str]:
    retry = getattr(exc, "retry_after", None)
    return {"Retry-After": str(max(1, math.ceil(retry)))} if retry is not None else {}


def response(exc: ServiceError) -> JSONResponse:
    status, body = render(exc)
    return JSONResponse(body, status_code=status, headers=_headers(exc))


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (routes of one path are separate, so Starlette's own
    ``Allow`` names only the first route's methods)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.methods and route.matches(request.scope)[0] != Match.NONE:
            methods |= route.methods
    return sorted(methods)


def install(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service_error(_req: Request, exc: ServiceError) -> JSONResponse:
        return response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = describe(list(exc.errors()))
        return JSONResponse(error_body(400, message, param=param, code="invalid_request"), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = str(exc.detail) if exc.detail else "error"
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 404 and message == "Not Found":
            message = "Unknown endpoint. See docs/api.md for the routes under /v1."
        elif exc.status_code == 405:
            allowed = _allowed_methods(_req)
            headers["Allow"] = ", ".join(allowed)
            message = f"Method {_req.method} is not allowed on this endpoint; use {' or '.join(allowed)}."
        return JSONResponse(error_body(exc.status_code, message), status_code=exc.status_code, headers=headers)

    @app.exception_handler(Exception)
    async def _crash(_req: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(error_body(500, f"Internal server error ({type(exc).__name__}). The server logs have "
                                            "the details."), status_code=500)
