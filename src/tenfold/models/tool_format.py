"""How tool calls look in text, for serving and training alike (so a model trained on tool conversations is
prompted exactly as it was trained).

Owns: the call syntax the model writes (``<tool_call>{"name": …, "arguments": {…}}</tool_call>``, one block
per call, the convention of Hermes / Qwen-style templates), turning OpenAI-shaped messages with ``tools``,
assistant ``tool_calls`` and ``tool`` messages into what a chat template can render: the template's own tool
support where it has one (it gets ``tools=`` and the calls as objects), else the documented default (the
tools described in a system message, calls written into the assistant's content, results as user messages
wrapped in ``<tool_response>``), ``render_chat`` (the template applied to such a conversation: serving's
prompts and training's examples both come from it), and parsing calls back out of generated text. Does not
own: message validation (``tenfold.inference``, ``tenfold.training``) or constraining decoding
(``tenfold.engine``).
"""

from __future__ import annotations

import json
import re
from typing import Any

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
RESPONSE_OPEN, RESPONSE_CLOSE = "<tool_response>", "</tool_response>"
_CALL = re.compile(re.escape(CALL_OPEN) + r"(.*?)" + re.escape(CALL_CLOSE), re.S)

DEFAULT_TOOLS_PROMPT = (
    "You can call functions to answer. The functions, with their parameters as JSON schemas:\n"
    "<tools>\n{tools}\n</tools>\n"
    "To call a function, reply only with " + CALL_OPEN + '{{"name": <function name>, "arguments": <arguments '
    'object>}}' + CALL_CLOSE + " (one block per call). Results come back wrapped in " + RESPONSE_OPEN
    + RESPONSE_CLOSE + ".")


class ToolFormatError(ValueError):
    """Messages that cannot be rendered (an argument string that is not JSON, a tool message with no call)."""


def template_supports_tools(tokenizer: Any) -> bool:
    """Whether the tokenizer's chat template renders a ``tools`` list (it mentions the variable)."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        template = template.get("tool_use") or template.get("default")
    return isinstance(template, str) and "tools" in template


def function_of(tool: dict) -> dict:
    """An OpenAI tool (``{"type": "function", "function": {...}}``) → its function (name, description,
    parameters)."""
    fn = tool.get("function", tool)
    out = {"name": fn["name"]}
    if fn.get("description"):
        out["description"] = fn["description"]
    out["parameters"] = fn.get("parameters") or {"type": "object", "properties": {}}
    return out


def arguments_object(name: str, arguments: Any) -> Any:
    """A call's arguments as an object: OpenAI sends them as a JSON string, TRL as an object."""
    if not isinstance(arguments, str):
        return arguments
    try:
        return json.loads(arguments) if arguments.strip() else {}
    except ValueError as e:
        raise ToolFormatError(f"the arguments of a call to {name} are not JSON: {e}") from None


def call_text(name: str, arguments: Any) -> str:
    """One call as the model writes it (compact JSON, arguments as an object)."""
    body = json.dumps({"name": name, "arguments": arguments_object(name, arguments)}, ensure_ascii=False,
                      separators=(",", ":"))
    return f"{CALL_OPEN}{body}{CALL_CLOSE}"


def _content(message: dict) -> str:
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


def to_template(messages: list[dict], tools: list[dict] | None, *, native: bool) -> tuple[list[dict], list | None]:
    """``(messages, tools)`` to hand to ``apply_chat_template``. ``native``: the template renders tools itself
    (calls become ``tool_calls`` with argument objects; results stay ``tool`` messages); else the default
    rendering described in the module docstring (no ``tools=``; plain roles and text only)."""
    functions = [function_of(t) for t in tools or []]
    if native:
        out = []
        for m in messages:
            m = dict(m)
            if m.get("tool_calls"):
                m["tool_calls"] = [{"type": "function", "function": {
                    "name": c["function"]["name"],
                    "arguments": arguments_object(c["function"]["name"], c["function"]["arguments"])}}
                    for c in m["tool_calls"]]
            if m.get("content") is None:
                m["content"] = ""
            out.append(m)
        return out, ([{"type": "function", "function": f} for f in functions] or None)
    out: list[dict] = []
    if functions:
        described = "\n".join(json.dumps(f, ensure_ascii=False) for f in functions)
        system = DEFAULT_TOOLS_PROMPT.format(tools=described)
        if messages and messages[0].get("role") in ("system", "developer"):
            system = _content(messages[0]) + "\n\n" + system
            messages = messages[1:]
        out.append({"role": "system", "content": system})
    for m in messages:
        role = m.get("role")
        if role == "tool":
            text = f"{RESPONSE_OPEN}{_content(m)}{RESPONSE_CLOSE}"
            if out and out[-1]["role"] == "user" and out[-1].get("_tool"):
                out[-1]["content"] += "\n" + text  # consecutive results: one user turn
            else:
                out.append({"role": "user", "content": text, "_tool": True})
            continue
        text = _content(m)
        if role == "assistant" and m.get("tool_calls"):
            calls = "".join(call_text(c["function"]["name"], c["function"]["arguments"]) for c in m["tool_calls"])
            text = text + calls
        out.append({"role": "system" if role == "developer" else role, "content": text})
    return [{k: v for k, v in m.items() if k != "_tool"} for m in out], None


def split_calls(text: str) -> tuple[list[tuple[str, str]], str]:
    """The complete call blocks ``text`` starts with, as ``[(name, arguments JSON)]``, and what follows them."""
    stripped = text.strip()
    calls, end = [], 0
    for m in _CALL.finditer(stripped):
        if stripped[end:m.start()].strip():
            break
        try:
            body = json.loads(m.group(1))
        except ValueError:
            break
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            break
        arguments = body.get("arguments", {})
        calls.append((body["name"], json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))))
        end = m.end()
    return calls, stripped[end:] if calls else text


def render_chat(tokenizer: Any, messages: list[dict], tools: list[dict] | None, *,
                add_generation_prompt: bool) -> str:
    """The chat template applied to ``messages`` (``role``, text ``content``, optional ``tool_calls`` /
    ``tool_call_id``) and ``tools``: the one rendering serving and training share."""
    extra: dict[str, Any] = {}
    if tools or any(m.get("role") == "tool" or m.get("tool_calls") for m in messages):
        messages, native_tools = to_template(messages, tools, native=template_supports_tools(tokenizer))
        if native_tools:
            extra["tools"] = native_tools
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt,
                                         **extra)


def parse_calls(text: str) -> list[tuple[str, str]] | None:
    """``[(name, arguments JSON)]`` when ``text`` is one or more call blocks and nothing else, else None."""
    calls, rest = split_calls(text)
    return calls if calls and not rest.strip() else None
