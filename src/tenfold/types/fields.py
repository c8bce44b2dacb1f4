"""Field types shared by request models, and the one way a request's validation errors are described.

Owns: ``Metadata`` (OpenAI's key-value pairs: at most 16, keys up to 64 characters, string values up to
512, as JSON Schema states them), ``OPENAI_PASSTHROUGH`` (OpenAI request fields that need no server
behaviour and are accepted as such) and ``describe`` (pydantic errors → one message naming the fields,
saying what is supported instead of an unknown field). Used by the api for HTTP bodies and by the batch
runner for batch lines, so both answer alike.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import Field, StringConstraints

Metadata = Annotated[
    dict[Annotated[str, StringConstraints(max_length=64)], Annotated[str, StringConstraints(max_length=512)]],
    Field(max_length=16, description="Up to 16 key-value pairs (keys up to 64 characters, values up to 512)."),
]

# OpenAI fields that ask for no behaviour from this server (end-user ids and hints for OpenAI's own storage,
# tiers and caches; prefix caching here is automatic): accepted and documented in docs/api.md.
OPENAI_PASSTHROUGH = ("user", "store", "service_tier", "metadata", "safety_identifier", "prompt_cache_key")


def describe(errors: list[dict[str, Any]], *, limit: int = 5) -> tuple[str, str | None]:
    """``("Invalid request: …", first field)`` for pydantic's ``errors()`` of a request."""
    parts, param = [], None
    for err in errors:
        loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path", "header")]
        where = ".".join(loc)
        param = param or (where or None)
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        if err.get("type") == "json_invalid":
            msg = "request body is not valid JSON"
        elif err.get("type") == "extra_forbidden":
            msg = "unknown field: this server does not support it (docs/api.md lists the supported fields)"
        named = re.match(r"^([a-z_]+): ", msg) if not where else None
        if named:  # a model-level rule whose message starts with the field it concerns
            param = param or named.group(1)
        parts.append(f"{where}: {msg}" if where else msg)
    return "Invalid request: " + "; ".join(parts[:limit]), param
