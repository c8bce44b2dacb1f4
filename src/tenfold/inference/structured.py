"""Structured outputs on the api side: ``response_format`` → an engine ``Constraint``, checked before anything
reaches an engine.

Owns: JSON mode (``json_object`` → the schema ``{"type": "object"}``), JSON schema (``json_schema.schema``),
the checks a schema must pass (a JSON Schema by its meta-schema, at most ``MAX_SCHEMA_BYTES`` serialized and
``MAX_DEPTH`` levels deep, every keyword implemented by the grammar compiler, compiled within
``COMPILE_SECONDS`` against the base model's tokenizer), each failure a 400 naming the field. Does not own:
decoding under the constraint (``tenfold.engine.grammar``) or tool calls (``tenfold.inference.tools``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tenfold.engine.types import Constraint, EngineError
from tenfold.errors import InvalidRequest
from tenfold.inference.prompts import Prompter

MAX_SCHEMA_BYTES = 64 * 1024
MAX_DEPTH = 24
COMPILE_SECONDS = 5.0
JSON_OBJECT = Constraint("json_schema", json.dumps({"type": "object"}))
SCHEMA_PARAM = "response_format.json_schema.schema"


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def check_schema(schema: Any, *, param: str) -> str:
    """The schema as canonical JSON text, or ``InvalidRequest`` naming ``param`` and what is wrong."""
    from jsonschema import SchemaError
    from jsonschema.validators import validator_for

    if not isinstance(schema, dict):
        raise InvalidRequest("The JSON schema must be an object.", param=param, code="invalid_json_schema")
    text = json.dumps(schema, separators=(",", ":"), ensure_ascii=False)
    if len(text.encode()) > MAX_SCHEMA_BYTES:
        raise InvalidRequest(f"The JSON schema is {len(text.encode())} bytes; at most {MAX_SCHEMA_BYTES} are "
                             "accepted. Simplify it or split the task.", param=param, code="json_schema_too_large")
    if _depth(schema) > MAX_DEPTH:
        raise InvalidRequest(f"The JSON schema nests more than {MAX_DEPTH} levels; flatten it.", param=param,
                             code="json_schema_too_deep")
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "(root)"
        raise InvalidRequest(f"Not a valid JSON Schema at {where}: {e.message}.", param=param,
                             code="invalid_json_schema") from None
    return text


def param_of(body: Any) -> str:
    fmt = getattr(body, "response_format", None)
    return SCHEMA_PARAM if fmt is not None and fmt.type == "json_schema" else "response_format"


def constraint_for(body: Any) -> Constraint | None:
    """The constraint ``body.response_format`` asks for (None for text), its schema checked."""
    fmt = getattr(body, "response_format", None)
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return JSON_OBJECT
    return Constraint("json_schema", check_schema(fmt.json_schema.schema_, param=SCHEMA_PARAM))


async def compile_checked(prompter: Prompter, constraint: Constraint, *, param: str) -> None:
    """Compile ``constraint`` for the base model's tokenizer (off the event loop, within ``COMPILE_SECONDS``);
    ``InvalidRequest`` naming ``param`` if it does not compile or uses a keyword the compiler does not
    implement."""
    try:
        warnings = await asyncio.wait_for(asyncio.to_thread(prompter.grammars().check, constraint), COMPILE_SECONDS)
    except TimeoutError:
        raise InvalidRequest(f"The grammar did not compile within {COMPILE_SECONDS:.0f} s; simplify the schema.",
                             param=param, code="grammar_too_complex") from None
    except EngineError as e:
        raise InvalidRequest(f"The schema cannot be used for constrained decoding: {e.message}", param=param,
                             code="unsupported_json_schema") from None
    if warnings:
        raise InvalidRequest(f"The schema uses what constrained decoding does not support: {'; '.join(warnings)}.",
                             param=param, code="unsupported_json_schema")
