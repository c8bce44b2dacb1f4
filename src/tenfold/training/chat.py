"""Checking the message lists inside a training line: roles, content, per-message ``weight``.

Owns: ``parse_messages`` (a conversation: known roles, text content, ``weight`` 0/1 on assistant turns only,
assistant ``tool_calls`` (OpenAI's or TRL's shape) naming the line's ``tools`` and ``tool`` results, not
starting with an assistant turn), ``parse_reply`` (a list that must hold exactly one
assistant message: a completion or a preference reply), ``content_text`` (a string or a list of text parts)
and ``kind`` (how a JSON value is named in messages). Every problem is a ``DatasetError`` naming the line
and saying what to fix. Does not own: which keys make which format (``tenfold.training.formats``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from tenfold.models import tool_format
from tenfold.training.errors import DatasetError
from tenfold.training.examples import Message

ROLES = ("system", "user", "assistant", "tool")


def parse_tool_calls(line: int, where: str, raw: Any, tools: Sequence[dict] | None) -> tuple[tuple[str, str], ...]:
    """An assistant's ``tool_calls`` (OpenAI's: arguments a JSON string; TRL's: an object) → (name, arguments
    JSON) pairs, each naming one of ``tools`` when the line has them."""
    if tools is None:
        raise DatasetError(line, f"{where}: 'tool_calls' need the functions in 'tools' on the same line, e.g. "
                                 '"tools": [{"type": "function", "function": {"name": "...", "parameters": {...}}}]')
    names = {t["function"]["name"] for t in tools}
    if not isinstance(raw, list):
        raise DatasetError(line, f"{where}.tool_calls must be a list of calls")
    calls = []
    for j, call in enumerate(raw):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise DatasetError(line, f"{where}.tool_calls[{j}] must be "
                                     '{"type": "function", "function": {"name": ..., "arguments": ...}}')
        if fn["name"] not in names:
            raise DatasetError(line, f"{where}.tool_calls[{j}] calls {fn['name']!r}, which is not in 'tools' "
                                     f"({', '.join(sorted(names))})")
        try:
            arguments = tool_format.arguments_object(fn["name"], fn.get("arguments", {}))
        except tool_format.ToolFormatError as e:
            raise DatasetError(line, f"{where}.tool_calls[{j}]: {e}") from None
        if not isinstance(arguments, dict):
            raise DatasetError(line, f"{where}.tool_calls[{j}]: arguments must be a JSON object")
        calls.append((fn["name"], json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))))
    return tuple(calls)


def parse_messages(line: int, raw: Any, *, need_assistant: bool = True, allow_weight: bool = True,
                   key: str = "messages", tools: Sequence[dict] | None = None,
                   allow_tools: bool = False) -> tuple[Message, ...]:
    if not isinstance(raw, list) or not raw:
        raise DatasetError(line, f"'{key}' must be a non-empty list")
    messages: list[Message] = []
    for i, msg in enumerate(raw):
        where = f"{key}[{i}]"
        if not isinstance(msg, dict):
            raise DatasetError(line, f"{where} must be an object with 'role' and 'content', got {kind(msg)}")
        if "role" not in msg:
            raise DatasetError(line, f"{where} has no 'role'")
        role = msg["role"]
        if "function_call" in msg:
            raise DatasetError(line, f"{where}: 'function_call' is OpenAI's deprecated single-call shape; write "
                                     "the call in 'tool_calls' (with 'tools' on the line)")
        if role not in ROLES:
            raise DatasetError(line, f"{where} has unknown role {role!r}; use one of {', '.join(ROLES)}")
        calls = parse_tool_calls(line, where, msg.get("tool_calls"), tools) if msg.get("tool_calls") else ()
        if calls and role != "assistant":
            raise DatasetError(line, f"{where}: only assistant messages carry 'tool_calls'")
        if role == "tool" and not allow_tools:
            raise DatasetError(line, f"{where}: tool messages belong in the 'messages' format (with 'tools')")
        if "content" not in msg and not calls:
            raise DatasetError(line, f"{where} has no 'content'")
        content = content_text(line, where, msg.get("content")) if msg.get("content") is not None else ""
        weight = 1
        if "weight" in msg:
            if role != "assistant":
                raise DatasetError(line, f"{where}: 'weight' is allowed only on assistant messages")
            if not allow_weight:
                raise DatasetError(line, f"{where}: 'weight' is not used here ({key} is never trained on); "
                                         "remove it, or use the 'messages' format to choose turns by weight")
            w = msg["weight"]
            if isinstance(w, bool) or w not in (0, 1):
                raise DatasetError(line, f"{where}: 'weight' must be 0 or 1, got {w!r}")
            weight = int(w)
        if role == "tool":
            before = next((m for m in reversed(messages) if m.role != "tool"), None)
            if before is None or not before.tool_calls:
                raise DatasetError(line, f"{where}: a tool message must answer an assistant message's "
                                         "'tool_calls' (put the call before its result)")
        call_id = msg.get("tool_call_id")
        if call_id is not None and not isinstance(call_id, str):
            raise DatasetError(line, f"{where}: 'tool_call_id' must be a string")
        messages.append(Message(role=role, content=content, weight=weight, tool_calls=calls,
                                tool_call_id=call_id if role == "tool" else None))
    first = next((m for m in messages if m.role != "system"), None)
    if first is not None and first.role == "assistant":
        raise DatasetError(line, "the conversation starts with an assistant message; put a user message "
                                 "before the first assistant reply")
    if need_assistant and not any(m.role == "assistant" for m in messages):
        raise DatasetError(line, "no assistant message: each example needs at least one assistant "
                                 "message to learn from")
    return tuple(messages)


def parse_reply(line: int, key: str, raw: Any, *, allow_weight: bool) -> Message:
    """The one assistant message of a ``completion`` / ``chosen`` / ``rejected`` / ``preferred_output`` list."""
    if not isinstance(raw, list) or len(raw) != 1 or not isinstance(raw[0], dict):
        raise DatasetError(line, f"'{key}' must be a list with one assistant message, e.g. "
                                 '[{"role": "assistant", "content": "..."}]')
    msg = raw[0]
    if msg.get("role") != "assistant":
        raise DatasetError(line, f"{key}[0] must have role 'assistant', got {msg.get('role')!r}")
    if "tool_calls" in msg or "function_call" in msg:
        raise DatasetError(line, f"{key}[0]: tool calls are not supported yet; remove them")
    if "content" not in msg:
        raise DatasetError(line, f"{key}[0] has no 'content'")
    weight = 1
    if "weight" in msg:
        w = msg["weight"]
        if not allow_weight:
            raise DatasetError(line, f"{key}[0]: 'weight' is not supported on preference replies; weigh the "
                                     "whole pair with the example's 'weight' (0 to 1)")
        if isinstance(w, bool) or w not in (0, 1):
            raise DatasetError(line, f"{key}[0]: 'weight' must be 0 or 1, got {w!r}")
        weight = int(w)
    return Message("assistant", content_text(line, f"{key}[0]", msg["content"]), weight)


def content_text(line: int, where: str, content: Any) -> str:
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
    raise DatasetError(line, f"{where}.content must be a string or a list of text parts, got {kind(content)}")


def kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)
