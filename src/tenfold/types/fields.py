"""Field types shared by request models, and the one way a request's validation errors are described.

Owns: ``Request`` (the base of request bodies: unknown fields refused, strict types), ``schema_only``,
``Metadata`` (OpenAI's key-value pairs: at most 16, keys up to 64 characters, string values up to
512, as JSON Schema states them), ``OPENAI_PASSTHROUGH`` (OpenAI request fields that need no server
behaviour and are accepted as such) and ``describe`` (pydantic errors → one message naming the fields,
saying what is supported instead of an unknown field). Used by the api for HTTP bodies and by the batch
runner for batch lines, so both answer alike.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator


class Request(BaseModel):
    """Base of JSON request bodies: unknown fields are refused, and values are taken as typed (``0`` is not
    ``false``, ``"5"`` is not ``5``), as JSON Schema reads them: ``16.0`` is the integer 16."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _json_integers(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: _integral(v) for k, v in data.items()}
        return data


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)  # a float field takes it back as a float; an integer field needs it as an int
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def schema_only(description: str | None = None, *, default: Any = None, **keywords: Any) -> Any:
    """A field whose OpenAPI schema admits only what the server honours (``{"maxItems": 0}``, ``{"enum":
    [false]}``…) while validation accepts more, so the refusal can name the field and say what to do instead."""
    return Field(default=default, description=description, json_schema_extra=keywords)


Metadata = Annotated[
    dict[Annotated[str, StringConstraints(max_length=64)], Annotated[str, StringConstraints(max_length=512)]],
    Field(max_length=16, description="Up to 16 key-value pairs (keys up to 64 characters, values up to 512)."),
]

# OpenAI fields that ask for no behaviour from this server (end-user ids and hints for OpenAI's own storage,
# tiers and caches; prefix caching here is automatic): accepted and documented in docs/api.md.
OPENAI_PASSTHROUGH = ("user", "store", "service_tier", "metadata", "safety_identifier", "prompt_cache_key")


_PATTERN_HINTS: dict[str, str] = {}


def hinted_pattern(regex: str, hint: str) -> str:
    """``regex`` for a field's ``pattern``, remembering what to tell a caller whose value does not match."""
    _PATTERN_HINTS[regex] = hint
    return regex


_TYPE_TAGS = {"int", "str", "float", "bool", "none", "list", "dict", "tuple", "function-after", "function-plain"}


def field_path(loc: tuple) -> str:
    """A pydantic error location as a field path: ``hyperparameters.batch_size``, not its union member tags
    (``constrained-int``, ``literal['auto']``, a tagged union's ``type=…``) or the request part (``body``,
    ``query``)."""
    if len(loc) >= 2 and loc[0] in ("query", "path", "header"):
        return str(loc[1])  # a parameter: its name (not the index of a repeated value)
    parts = []
    for x in loc:
        if isinstance(x, int):
            parts.append(str(x))
        elif x in ("body", "query", "path", "header") and not parts:
            continue
        elif x in _TYPE_TAGS or "[" in x or x.startswith(("constrained-", "function-", "lax-", "json-", "type=")):
            continue
        else:
            parts.append(x)
    return ".".join(parts)


def describe(errors: list[dict[str, Any]], *, limit: int = 5) -> tuple[str, str | None]:
    """``("Invalid request: …", first field)`` for pydantic's ``errors()`` of a request; one message per field
    (for a field of several allowed types, the first type's complaint)."""
    parts, param, seen = [], None, set()
    for err in errors:
        where = field_path(tuple(err.get("loc", ())))
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        named = re.match(r"^([a-z_]+): (.*)$", msg, re.S) if err.get("type") == "value_error" else None
        if named:  # a model-level rule whose message starts with the field it concerns
            where, msg = (f"{where}.{named.group(1)}" if where else named.group(1)), named.group(2)
        if where in seen:
            continue
        seen.add(where)
        param = param or (where or None)
        if err.get("type") == "json_invalid":
            msg = "request body is not valid JSON"
        elif err.get("type") == "string_pattern_mismatch" and (err.get("ctx") or {}).get("pattern") in _PATTERN_HINTS:
            msg = _PATTERN_HINTS[err["ctx"]["pattern"]]
        elif err.get("type") == "extra_forbidden":
            msg = "unknown field: this server does not support it (docs/api.md lists the supported fields)"
        parts.append(f"{where}: {msg}" if where else msg)
    return "Invalid request: " + "; ".join(parts[:limit]), param
