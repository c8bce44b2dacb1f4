"""Tool calling on the api side: ``tools`` / ``tool_choice`` / ``parallel_tool_calls`` → a grammar the engine
decodes under, and generated text → OpenAI ``tool_calls`` (whole, or streamed as deltas).

Owns: the plan of one request (which functions, ``auto`` / ``required`` / one named function, one call or
several), its Lark grammar (``auto``: plain text that does not start with ``<``, or calls; ``required`` and a
named function: calls only; each call's JSON constrained to ``{"name": <a tool>, "arguments": <its
parameters schema>}`` with compact whitespace, so arguments always validate), checking each parameters schema
(a 400 naming ``tools.N.function.parameters``), and turning text into calls (``shape``) or, streaming, into
tool-call deltas as each call completes (``CallStream``). Does not own: how calls and tool messages are
written into prompts (``tenfold.models.tool_format``) or decoding (``tenfold.engine``).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from tenfold.engine.types import Constraint
from tenfold.inference.structured import check_schema
from tenfold.models.tool_format import CALL_CLOSE, CALL_OPEN, function_of, parse_calls, split_calls

_COMPACT = {"whitespace_flexible": False, "item_separator": ",", "key_separator": ":"}


@dataclass(frozen=True)
class ToolPlan:
    functions: list[dict]  # name, description, parameters
    mode: str  # "auto" | "required" | "named"
    parallel: bool

    def grammar(self) -> str:
        options = [{"type": "object", "properties": {"name": {"const": f["name"]}, "arguments": f["parameters"]},
                    "required": ["name", "arguments"], "additionalProperties": False} for f in self.functions]
        body = {"x-guidance": _COMPACT, **({"oneOf": options} if len(options) > 1 else options[0])}
        calls = "call+" if self.parallel else "call"
        start = "calls | TEXT" if self.mode == "auto" else "calls"
        return (f"start: {start}\n"
                f"calls: {calls}\n"
                f"call: {json.dumps(CALL_OPEN)} body {json.dumps(CALL_CLOSE)}\n"
                f"body: %json {json.dumps(body, ensure_ascii=False)}\n"
                "TEXT: /[^<][\\s\\S]*/\n")

    def constraint(self) -> Constraint:
        return Constraint("lark", self.grammar())


def plan_for(body: Any) -> ToolPlan | None:
    """The tool plan of a chat request (None when it has no tools or ``tool_choice`` is none); each function's
    parameters schema checked."""
    if not getattr(body, "tools", None) or body.tool_choice == "none":
        return None
    functions = []
    for i, tool in enumerate(body.tools):
        fn = function_of(tool.model_dump(by_alias=True, exclude_none=True))
        fn["parameters"] = json.loads(check_schema(fn["parameters"], param=f"tools.{i}.function.parameters"))
        functions.append(fn)
    choice = body.tool_choice
    mode = "auto" if choice in (None, "auto") else "required" if choice == "required" else "named"
    if mode == "named":
        functions = [f for f in functions if f["name"] == choice.function.name]
    return ToolPlan(functions, mode, body.parallel_tool_calls is not False)


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


def tool_call(index: int | None, name: str, arguments: str) -> dict:
    call = {"id": new_call_id(), "type": "function", "function": {"name": name, "arguments": arguments}}
    return call if index is None else {"index": index, **call}


def shape(text: str, finish: str | None) -> tuple[str | None, list[dict] | None, str | None]:
    """``(content, tool_calls, finish_reason)`` of a whole answer: its calls (finish ``tool_calls``) when it is
    calls and ended by itself; cut by ``max_tokens``, the complete calls and the cut text (finish ``length``),
    as a stream sends them; else the text."""
    calls, rest = split_calls(text)
    if not calls:
        return text, None, finish
    shaped = [tool_call(None, name, arguments) for name, arguments in calls]
    if finish == "stop" and not rest.strip():
        return None, shaped, "tool_calls"
    return rest or None, shaped, finish


@dataclass
class CallStream:
    """One streamed choice under a tool plan: text streams as content; an answer that starts with a call is
    held back and each call is sent as tool-call deltas when its closing tag arrives."""

    buffer: str = ""
    mode: str | None = None  # None until the first character: "text" | "calls"
    sent: int = 0  # calls sent so far
    pending_logprobs: list = field(default_factory=list)

    def feed(self, text: str) -> tuple[str, list[dict]]:
        """``(content to send, tool-call deltas to send)`` for this piece of text."""
        if self.mode == "text":
            return text, []
        self.buffer += text
        if self.mode is None:
            stripped = self.buffer.lstrip()
            if not stripped:
                return "", []
            if not stripped.startswith("<"):  # under the grammar, text never starts with "<"
                self.mode = "text"
                out, self.buffer = self.buffer, ""
                return out, []
            self.mode = "calls"
        deltas = []
        while (end := self.buffer.find(CALL_CLOSE)) >= 0:
            block, self.buffer = self.buffer[: end + len(CALL_CLOSE)], self.buffer[end + len(CALL_CLOSE):]
            parsed = parse_calls(block)
            if not parsed:
                continue
            name, arguments = parsed[0]
            call = tool_call(self.sent, name, "")
            deltas += [call, {"index": self.sent, "function": {"arguments": arguments}}]
            self.sent += 1
        return "", deltas

    def finish(self, reason: str | None) -> tuple[str, str | None]:
        """``(content still held back, finish reason)`` at the end: ``tool_calls`` when calls were sent and the
        answer ended normally; an answer cut mid-call keeps its text (finish ``length``)."""
        rest, self.buffer = self.buffer, ""
        if self.mode == "calls" and self.sent and reason == "stop":
            return "", "tool_calls"
        return rest, reason
