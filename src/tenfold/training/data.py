"""Validation and parsing of fine-tuning JSONL files (``purpose="fine-tune"``).

Owns: the accepted dataset formats (conversational ``messages`` and ``prompt``/``completion``), per-example
and per-message ``weight``, and error messages that name the 1-based line and say what to fix. The api calls
``validate_jsonl`` on upload; the recipes call ``parse_jsonl`` to get normalized ``Example`` objects.
Does not own: tokenization and loss masks (``tenfold.training.tokenize``). No torch here.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from tenfold.training.errors import DatasetError

__all__ = ["DatasetError", "DatasetSummary", "Example", "Message", "parse_jsonl", "validate_jsonl"]

Format = Literal["messages", "prompt_completion"]
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class DatasetSummary:
    n_examples: int
    format: Format
    n_bytes: int


@dataclass(frozen=True)
class Message:
    role: str
    content: str
    weight: int = 1  # only meaningful on assistant messages: 0 = do not train on this turn


@dataclass(frozen=True)
class Example:
    line: int  # 1-based line in the file, for warnings
    messages: tuple[Message, ...]
    weight: float = 1.0  # scales this example's loss
    format: Format = "messages"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


def validate_jsonl(data: bytes, *, purpose: str = "fine-tune") -> DatasetSummary:
    """Check a whole training file; raise ``DatasetError`` at the first problem."""
    examples = parse_jsonl(data, purpose=purpose)
    return DatasetSummary(n_examples=len(examples), format=examples[0].format, n_bytes=len(data))


def parse_jsonl(data: bytes, *, purpose: str = "fine-tune") -> list[Example]:
    """Parse and normalize a training file into examples (message content as plain strings)."""
    if purpose != "fine-tune":
        raise DatasetError(0, f"unsupported purpose {purpose!r}: training files use purpose 'fine-tune'")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DatasetError(line, f"the file is not valid UTF-8 (byte {exc.start}); save it as UTF-8") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()  # blank lines at the end are fine
    if not lines:
        raise DatasetError(0, "the file is empty: add one JSON object per line")
    examples: list[Example] = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            raise DatasetError(number, "blank line: every line must hold one JSON object (blank lines are "
                                       "allowed only at the end of the file)")
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DatasetError(number, f"invalid JSON: {exc.msg} at column {exc.colno}") from None
        example = _parse_object(number, obj)
        if examples and example.format != examples[0].format:
            raise DatasetError(number, f"this line uses the {example.format!r} format but line 1 uses "
                                       f"{examples[0].format!r}; use one format for the whole file")
        examples.append(example)
    return examples


def _parse_object(line: int, obj: Any) -> Example:
    if not isinstance(obj, dict):
        raise DatasetError(line, f"expected a JSON object, got {_kind(obj)}")
    weight = _example_weight(line, obj)
    if "messages" in obj:
        if "prompt" in obj or "completion" in obj:
            raise DatasetError(line, "use either 'messages' or 'prompt'/'completion', not both")
        messages = _parse_messages(line, obj["messages"])
        return Example(line=line, messages=messages, weight=weight, format="messages")
    if "prompt" in obj or "completion" in obj:
        for key in ("prompt", "completion"):
            if key not in obj:
                raise DatasetError(line, f"missing {key!r}: prompt/completion examples need both keys")
            if not isinstance(obj[key], str):
                raise DatasetError(line, f"{key!r} must be a string, got {_kind(obj[key])}")
        if not obj["completion"]:
            raise DatasetError(line, "'completion' is empty: there is nothing to learn from")
        messages = (Message("user", obj["prompt"]), Message("assistant", obj["completion"]))
        return Example(line=line, messages=messages, weight=weight, format="prompt_completion")
    raise DatasetError(line, "expected a 'messages' list (chat format) or 'prompt' and 'completion' strings; "
                             f"found keys {sorted(obj)}")


def _parse_messages(line: int, raw: Any) -> tuple[Message, ...]:
    if not isinstance(raw, list) or not raw:
        raise DatasetError(line, "'messages' must be a non-empty list")
    messages: list[Message] = []
    for i, msg in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise DatasetError(line, f"{where} must be an object with 'role' and 'content', got {_kind(msg)}")
        if "role" not in msg:
            raise DatasetError(line, f"{where} has no 'role'")
        role = msg["role"]
        if role == "tool" or "tool_calls" in msg or "function_call" in msg:
            raise DatasetError(line, f"{where}: tool messages and tool calls are not supported yet; "
                                     "remove them or flatten them into user/assistant text")
        if role not in ROLES:
            raise DatasetError(line, f"{where} has unknown role {role!r}; use one of {', '.join(ROLES)}")
        if "content" not in msg:
            raise DatasetError(line, f"{where} has no 'content'")
        content = _content_text(line, where, msg["content"])
        weight = 1
        if "weight" in msg:
            if role != "assistant":
                raise DatasetError(line, f"{where}: 'weight' is allowed only on assistant messages")
            w = msg["weight"]
            if isinstance(w, bool) or w not in (0, 1):
                raise DatasetError(line, f"{where}: 'weight' must be 0 or 1, got {w!r}")
            weight = int(w)
        messages.append(Message(role=role, content=content, weight=weight))
    first = next((m for m in messages if m.role != "system"), None)
    if first is not None and first.role == "assistant":
        raise DatasetError(line, "the conversation starts with an assistant message; put a user message "
                                 "before the first assistant reply")
    if not any(m.role == "assistant" for m in messages):
        raise DatasetError(line, "no assistant message: each example needs at least one assistant "
                                 "message to learn from")
    return tuple(messages)


def _content_text(line: int, where: str, content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise DatasetError(line, f"{where}.content[{j}] must be {{\"type\": \"text\", \"text\": \"...\"}}"
                                         " (only text parts are supported)")
            parts.append(part["text"])
        return "".join(parts)
    raise DatasetError(line, f"{where}.content must be a string or a list of text parts, got {_kind(content)}")


def _example_weight(line: int, obj: dict[str, Any]) -> float:
    if "weight" not in obj:
        return 1.0
    w = obj["weight"]
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or not 0 <= w <= 1:
        raise DatasetError(line, f"'weight' must be a number from 0 to 1, got {w!r}")
    return float(w)


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)
