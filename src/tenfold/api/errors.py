"""OpenAI-shaped errors: the ``APIError`` exception services raise and the handlers that render every
failure (ours, FastAPI's validation errors, unknown routes, crashes) as
``{"error": {"message", "type", "param", "code"}}``.

Owns: status codes and error types. Request validation failures are 400, never a bare 422.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tenfold.engine.types import EngineOverloaded

log = logging.getLogger("tenfold.api")

_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
    409: "conflict_error", 413: "invalid_request_error", 429: "rate_limit_error", 503: "service_unavailable",
}


class APIError(Exception):
    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict:
        return error_body(self.status, self.message, code=self.code, param=self.param)


def error_body(status: int, message: str, *, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": _TYPES.get(status, "api_error"), "param": param, "code": code}}


def bad_request(message: str, *, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def not_found(kind: str, ident: str, *, hint: str = "") -> APIError:
    msg = f"No {kind} with id '{ident}' was found."
    return APIError(404, msg + (" " + hint if hint else ""), code=f"{kind.replace(' ', '_')}_not_found")


def _describe_validation(exc: RequestValidationError) -> tuple[str, str | None]:
    parts, param = [], None
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path", "header")]
        where = ".".join(loc)
        param = param or (where or None)
        msg = err.get("msg", "invalid value")
        if err.get("type") == "json_invalid":
            msg = "request body is not valid JSON"
        parts.append(f"{where}: {msg}" if where else msg)
    return "Invalid request: " + "; ".join(parts[:5]), param


def install(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_req: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(EngineOverloaded)
    async def _overloaded(_req: Request, exc: EngineOverloaded) -> JSONResponse:
        retry = str(max(1, round(exc.retry_after)))
        return JSONResponse(error_body(429, str(exc), code="engine_overloaded"), status_code=429,
                            headers={"Retry-After": retry})

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _describe_validation(exc)
        return JSONResponse(error_body(400, message, param=param, code="invalid_request"), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = str(exc.detail) if exc.detail else "error"
        if exc.status_code == 404 and message == "Not Found":
            message = "Unknown endpoint. See docs/api.md for the routes under /v1."
        elif exc.status_code == 405:
            message = "Method not allowed on this endpoint."
        return JSONResponse(error_body(exc.status_code, message), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _crash(_req: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(error_body(500, f"Internal server error ({type(exc).__name__}). The server logs have "
                                            "the details."), status_code=500)
