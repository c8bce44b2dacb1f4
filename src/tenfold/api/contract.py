"""The HTTP contract beyond the routes themselves, so ``/openapi.json`` says exactly what the server does.

Owns: the error responses a route declares (``errors(...)``: the OpenAI error shape, with ``Retry-After``
on 429 and 503), the non-JSON bodies (SSE streams, JSONL file content, CSV, Prometheus text), the response
headers we set (``X-Tenfold-Checkpoint``), the bearer security scheme, and the final OpenAPI document
(FastAPI's 422 entries removed: validation failures are 400 here). Does not own: routes or error rendering
(``errors``).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.security import HTTPBearer
from pydantic import BaseModel

from tenfold.types.common import ErrorResponse

bearer = HTTPBearer(auto_error=False, scheme_name="bearerAuth", bearerFormat="tf-…",
                    description="An API key: `Authorization: Bearer tf-…` (`tenfold keys create`).")

_WHY = {
    400: "Invalid request: a field is malformed, out of range, unknown or not supported; `error.param` names it.",
    401: "No API key, a malformed Authorization header, or a key nobody issued.",
    403: "The key is not allowed to do this (an admin key is needed).",
    404: "No such resource, or one that belongs to another organization.",
    409: "The resource's state forbids this now (the message says what to do).",
    413: "The upload is larger than the server's limit (TENFOLD_MAX_UPLOAD_BYTES).",
    429: "Too many requests waiting (retry after `Retry-After` seconds) or the organization's monthly spend limit "
         "was reached (`error.code` spend_limit_exceeded).",
    503: "No capacity to serve this right now; retry after `Retry-After` seconds.",
}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entries for these error statuses, each the OpenAI error shape."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        entry: dict[str, Any] = {"model": ErrorResponse, "description": _WHY[code]}
        if code in (429, 503):
            entry["headers"] = _RETRY_AFTER
        out[code] = entry
    return out


CHECKPOINT_HEADER = {"X-Tenfold-Checkpoint": {
    "description": "The checkpoint that served (`<job>/step-N`); absent for a final adapter or a base model.",
    "schema": {"type": "string"}}}


def text_body(media_type: str, description: str) -> dict[int | str, dict[str, Any]]:
    """A 200 whose body is text of ``media_type`` (not JSON)."""
    return {200: {"description": description, "content": {media_type: {"schema": {"type": "string"}}}}}


def binary_body(media_type: str, description: str) -> dict[int | str, dict[str, Any]]:
    """A 200 whose body is bytes of ``media_type`` (an archive)."""
    return {200: {"description": description,
                  "content": {media_type: {"schema": {"type": "string", "format": "binary"}}}}}


def sse_or_json(description: str, chunk: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    """A 200 that is the JSON response model, or with ``stream: true`` server-sent events, each a ``chunk``
    as JSON (an error object if the request fails mid-stream), then ``[DONE]``."""
    event = {"type": "object", "required": ["data"], "properties": {
        "data": {"type": "string", "contentMediaType": "application/json",
                 "contentSchema": {"$ref": f"#/components/schemas/{chunk.__name__}"},
                 "description": f"A {chunk.__name__} as JSON; an ErrorResponse if the request fails mid-stream; "
                                "the last event is [DONE]."},
        "event": {"type": "string", "enum": ["message"]}}}
    return {200: {"description": description, "headers": CHECKPOINT_HEADER,
                  "content": {"text/event-stream": {"schema": event}}}}


STREAM_CHUNKS: list[type[BaseModel]] = []  # chunk models the event streams refer to (added to the document)


def _add_models(doc: dict, models: list[type[BaseModel]]) -> None:
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
        for name, sub in schema.pop("$defs", {}).items():
            schemas.setdefault(name, sub)
        schemas.setdefault(model.__name__, schema)


def _drop_null(schema: dict) -> None:
    options = schema.get("anyOf")
    if options and {"type": "null"} in options:
        rest = [o for o in options if o != {"type": "null"}]
        schema.pop("anyOf")
        if schema.get("default", 0) is None:
            schema.pop("default")
        if len(rest) == 1:
            schema.update(rest[0])
        else:
            schema["anyOf"] = rest


def _no_null_parameters(doc: dict) -> None:
    """Query, path and form values are strings (or files) on the wire and cannot be null: ``str | None``
    parameters and form fields are documented as optional, not ``anyOf [string, null]``."""
    schemas = doc.get("components", {}).get("schemas", {})
    for path in doc.get("paths", {}).values():
        for op in path.values():
            if not isinstance(op, dict):
                continue
            for param in op.get("parameters", []):
                _drop_null(param.get("schema", {}))
            form = op.get("requestBody", {}).get("content", {}).get("multipart/form-data", {}).get("schema", {})
            ref = form.get("$ref", "")
            body = schemas.get(ref.rsplit("/", 1)[-1], {}) if ref else form
            for field in body.get("properties", {}).values():
                _drop_null(field)


def _strip_validation_errors(doc: dict) -> None:
    for path in doc.get("paths", {}).values():
        for op in path.values():
            if isinstance(op, dict):
                op.get("responses", {}).pop("422", None)
    schemas = doc.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)


def _state_this_server(doc: dict, base_models: list[str], hardware_profiles: list[str]) -> None:
    """What this server offers is an enum in the document, not a runtime surprise: the base models a job may
    fine-tune, and the hardware profiles a deployment may run on."""
    schemas = doc.get("components", {}).get("schemas", {})
    if "JobCreate" in schemas:
        schemas["JobCreate"]["properties"]["model"]["enum"] = list(base_models)
    if "DeploymentCreate" in schemas:
        field = schemas["DeploymentCreate"]["properties"]["hardware_profile"]
        for option in field.get("anyOf", [field]):
            if option.get("type") == "string":
                option["enum"] = list(hardware_profiles)


def install(app: FastAPI, *, base_models: list[str], hardware_profiles: list[str]) -> None:
    """Serve the OpenAPI document as described above (built once, on first request)."""

    def openapi() -> dict:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            _strip_validation_errors(doc)
            _no_null_parameters(doc)
            _add_models(doc, STREAM_CHUNKS)
            _state_this_server(doc, base_models, hardware_profiles)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
