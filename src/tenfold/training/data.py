"""Validation and parsing of fine-tuning JSONL files (``purpose="fine-tune"``).

Owns: the accepted dataset formats (conversational ``messages``, ``prompt``/``completion`` and preference
pairs ``prompt``/``chosen``/``rejected`` or OpenAI's ``input``/``preferred_output``/``non_preferred_output``),
per-example and per-message ``weight`` (0 excludes), and error messages that name the 1-based line and say
what to fix: every bad line is reported (the first ``MAX_REPORTED_PROBLEMS`` listed, all counted). The api calls
``validate_jsonl`` on upload; the recipes call ``parse_jsonl`` (``read_examples`` for a job's file on disk)
to get normalized ``Example`` objects.
Does not own: tokenization and loss masks (``tenfold.training.tokenize``). No torch here.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tenfold.training.errors import DatasetError, TrainingUserError

if TYPE_CHECKING:
    from tenfold.training.spec import TrainingSpec

__all__ = ["DatasetError", "DatasetSummary", "Example", "Message", "parse_jsonl", "validate_jsonl"]

Format = Literal["messages", "prompt_completion", "preference"]
MAX_REPORTED_PROBLEMS = 20  # bad lines listed in one error; the count covers all of them
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class DatasetSummary:
    n_examples: int
    format: Format
    n_bytes: int
    examples: tuple[Example, ...] = field(default=(), compare=False, repr=False)


@dataclass(frozen=True)
class Message:
    role: str
    content: str
    weight: int = 1  # only meaningful on assistant messages: 0 = do not train on this turn


@dataclass(frozen=True)
class Example:
    line: int  # 1-based line in the file, for warnings
    messages: tuple[Message, ...]  # for preference pairs: the prompt conversation (no final assistant turn)
    weight: float = 1.0  # scales this example's loss
    format: Format = "messages"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    chosen: str | None = None  # preference pairs only: the preferred assistant reply
    rejected: str | None = None  # preference pairs only: the dispreferred assistant reply


def validate_jsonl(data: bytes, *, purpose: str = "fine-tune") -> DatasetSummary:
    """Check a whole training file; raise ``DatasetError`` at the first problem."""
    examples = parse_jsonl(data, purpose=purpose)
    return DatasetSummary(n_examples=len(examples), format=examples[0].format, n_bytes=len(data),
                          examples=tuple(examples))


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
    problems: list[tuple[int, str]] = []
    n_bad = 0
    for number, raw in enumerate(lines, start=1):
        try:
            if not raw.strip():
                raise DatasetError(number, "blank line: every line must hold one JSON object (blank lines are "
                                           "allowed only at the end of the file)")
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise DatasetError(number, f"invalid JSON: {exc.msg} at column {exc.colno}") from None
            example = _parse_object(number, obj)
            if examples and example.format != examples[0].format:
                raise DatasetError(number, f"this line uses the {example.format!r} format but line "
                                           f"{examples[0].line} uses {examples[0].format!r}; use one format "
                                           "for the whole file")
        except DatasetError as exc:
            n_bad += 1
            if len(problems) < MAX_REPORTED_PROBLEMS:
                problems.append((exc.line, exc.message))
            continue
        examples.append(example)
    if problems:
        first_line, first_message = problems[0]
        raise DatasetError(first_line, first_message, problems=problems, n_bad=n_bad, n_lines=len(lines))
    return examples


def _parse_object(line: int, obj: Any) -> Example:
    if not isinstance(obj, dict):
        raise DatasetError(line, f"expected a JSON object, got {_kind(obj)}")
    weight = _example_weight(line, obj)
    if "chosen" in obj or "rejected" in obj or "preferred_output" in obj or "non_preferred_output" in obj:
        return _parse_preference(line, obj, weight)
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
    raise DatasetError(line, "expected a 'messages' list (chat format), 'prompt' and 'completion' strings, or "
                             f"'prompt', 'chosen' and 'rejected' (preference pairs); found keys {sorted(obj)}")


def _parse_preference(line: int, obj: dict[str, Any], weight: float) -> Example:
    """``{"prompt", "chosen", "rejected"}`` (prompt: a string or a messages list ending in a user turn), or
    OpenAI's ``{"input": {"messages"}, "preferred_output": [msg], "non_preferred_output": [msg]}``."""
    if "preferred_output" in obj or "non_preferred_output" in obj:
        for key in ("input", "preferred_output", "non_preferred_output"):
            if key not in obj:
                raise DatasetError(line, f"missing {key!r}: OpenAI-style preference examples need 'input', "
                                         "'preferred_output' and 'non_preferred_output'")
        if not isinstance(obj["input"], dict) or "messages" not in obj["input"]:
            raise DatasetError(line, "'input' must be an object with a 'messages' list")
        prompt: Any = obj["input"]["messages"]
        replies = {}
        for key, ours in (("preferred_output", "chosen"), ("non_preferred_output", "rejected")):
            out = obj[key]
            if (not isinstance(out, list) or len(out) != 1 or not isinstance(out[0], dict)
                    or out[0].get("role") != "assistant"):
                raise DatasetError(line, f"{key!r} must be a list with one assistant message")
            replies[ours] = _content_text(line, f"{key}[0]", out[0].get("content"))
        chosen, rejected = replies["chosen"], replies["rejected"]
    else:
        for key in ("prompt", "chosen", "rejected"):
            if key not in obj:
                raise DatasetError(line, f"missing {key!r}: preference examples need 'prompt', 'chosen' and "
                                         "'rejected'")
        for key in ("chosen", "rejected"):
            if not isinstance(obj[key], str):
                raise DatasetError(line, f"{key!r} must be a string, got {_kind(obj[key])}")
        prompt, chosen, rejected = obj["prompt"], obj["chosen"], obj["rejected"]
    if isinstance(prompt, str):
        messages: tuple[Message, ...] = (Message("user", prompt),)
    elif isinstance(prompt, list):
        messages = _parse_messages(line, prompt, need_assistant=False)
        if messages[-1].role != "user":
            raise DatasetError(line, "the prompt conversation must end with a user message")
    else:
        raise DatasetError(line, f"'prompt' must be a string or a messages list, got {_kind(prompt)}")
    if not chosen or not rejected:
        raise DatasetError(line, "'chosen' and 'rejected' must both be non-empty")
    if chosen == rejected:
        raise DatasetError(line, "'chosen' and 'rejected' are identical: there is no preference to learn")
    return Example(line=line, messages=messages, weight=weight, format="preference", chosen=chosen,
                   rejected=rejected)


def _parse_messages(line: int, raw: Any, *, need_assistant: bool = True) -> tuple[Message, ...]:
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
    if need_assistant and not any(m.role == "assistant" for m in messages):
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


def read_examples(path: str, spec: TrainingSpec) -> list[Example]:
    """The examples of a job file on disk (the training file's errors as they are, the validation file's named)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise TrainingUserError(f"cannot read training file {path}: {exc.strerror}") from None
    try:
        return parse_jsonl(data)
    except DatasetError as exc:
        if path == spec.training_file:
            raise
        raise DatasetError(exc.line, f"validation file: {exc.message}") from None
