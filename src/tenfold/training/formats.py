"""Recognizing one line of a fine-tuning file as one of the supported dataset formats.

Owns: ``parse_line`` (a decoded JSON line → a normalized ``Example`` whose ``format`` names what was
recognized) for TRL's documented formats (https://huggingface.co/docs/trl/dataset_formats) and OpenAI's:

- SFT: ``messages`` (TRL conversational language modeling; OpenAI's chat format; with ``tools``, assistant
  ``tool_calls`` and ``tool`` results: OpenAI's and TRL's tool-calling shapes), ``text`` (TRL standard
  language modeling, trained as raw text), ``prompt_completion`` (strings; rendered as a user turn and an
  assistant turn), ``conversational_prompt_completion`` (message lists; only the completion is trained).
- DPO: ``preference`` (explicit prompt, string replies; the prompt may also be a message list),
  ``conversational_preference`` (explicit prompt, message lists), ``implicit_prompt_preference``
  (``chosen``/``rejected`` message lists that share the prompt turns), ``openai_preference``.

Anything else is a ``DatasetError`` for the line with a hint naming the nearest supported format (TRL types
this server does not train, such as prompt-only or unpaired preference, are named as such). Does not own:
message lists (``tenfold.training.chat``) or whole files (``tenfold.training.data``).
"""

from __future__ import annotations

import math
from typing import Any

from tenfold.training.chat import kind, parse_messages, parse_reply
from tenfold.training.errors import DatasetError
from tenfold.training.examples import FORMAT_EXAMPLES, FORMAT_LABELS, Example, Message


def parse_line(line: int, obj: Any) -> Example:
    if not isinstance(obj, dict):
        raise DatasetError(line, f"expected a JSON object, got {kind(obj)}")
    weight = _example_weight(line, obj)
    _refuse_tools(line, obj)
    if "preferred_output" in obj or "non_preferred_output" in obj:
        return _openai_preference(line, obj, weight)
    if "chosen" in obj or "rejected" in obj:
        return _trl_preference(line, obj, weight)
    if "messages" in obj:
        for other in ("prompt", "completion", "text"):
            if other in obj:
                raise DatasetError(line, f"use either 'messages' or '{other}', not both")
        tools = _tools(line, obj.get("tools"))
        messages = parse_messages(line, obj["messages"], tools=tools, allow_tools=True)
        return Example(line=line, messages=messages, weight=weight, format="messages", tools=tuple(tools or ()))
    if "text" in obj:
        return _text(line, obj, weight)
    if "prompt" in obj or "completion" in obj:
        return _prompt_completion(line, obj, weight)
    raise DatasetError(line, _nearest_format_hint(obj))


def _text(line: int, obj: dict[str, Any], weight: float) -> Example:
    for other in ("prompt", "completion"):
        if other in obj:
            raise DatasetError(line, f"use either 'text' or '{other}', not both")
    text = obj["text"]
    if not isinstance(text, str):
        raise DatasetError(line, f"'text' must be a string, got {kind(text)}")
    if not text.strip():
        raise DatasetError(line, "'text' is empty: there is nothing to learn from")
    return Example(line=line, messages=(), weight=weight, format="text", text=text)


def _prompt_completion(line: int, obj: dict[str, Any], weight: float) -> Example:
    if "label" in obj:
        raise DatasetError(line, "'prompt'/'completion' with a 'label' is TRL's unpaired preference type (KTO), "
                                 "which this server does not train; for DPO give pairs: " + _show("preference"))
    if "completions" in obj or "labels" in obj:
        raise DatasetError(line, "'completions'/'labels' is TRL's stepwise supervision type, which this server "
                                 "does not train; the nearest supported format is " + _show("prompt_completion"))
    for key in ("prompt", "completion"):
        if key not in obj:
            only = (" (a 'prompt' alone is TRL's prompt-only type, for online methods this server does not run)"
                    if key == "completion" else "")
            raise DatasetError(line, f"missing {key!r}: prompt/completion examples need both keys{only}")
        if not isinstance(obj[key], (str, list)):
            raise DatasetError(line, f"{key!r} must be a string or a messages list, got {kind(obj[key])}")
    prompt, completion = obj["prompt"], obj["completion"]
    if isinstance(prompt, str) and isinstance(completion, str):
        if not completion:
            raise DatasetError(line, "'completion' is empty: there is nothing to learn from")
        return Example(line=line, messages=(Message("user", prompt), Message("assistant", completion)),
                       weight=weight, format="prompt_completion")
    if isinstance(prompt, list) and isinstance(completion, list):
        turns = _prompt_turns(line, prompt, key="prompt")
        reply = parse_reply(line, "completion", completion, allow_weight=True)
        if not reply.content:
            raise DatasetError(line, "'completion' is empty: there is nothing to learn from")
        # The prompt is input: its assistant turns (few-shot examples) are context, never trained.
        context = tuple(Message(m.role, m.content, 0) if m.role == "assistant" else m for m in turns)
        return Example(line=line, messages=(*context, reply), weight=weight,
                       format="conversational_prompt_completion")
    raise DatasetError(line, f"'prompt' and 'completion' must both be strings ({_show('prompt_completion')}) or "
                             f"both message lists ({_show('conversational_prompt_completion')}); got "
                             f"{kind(prompt)} and {kind(completion)}")


def _trl_preference(line: int, obj: dict[str, Any], weight: float) -> Example:
    for key in ("chosen", "rejected"):
        if key not in obj:
            raise DatasetError(line, f"missing {key!r}: preference examples need 'prompt', 'chosen' and 'rejected' "
                                     "('prompt' may be left out only when 'chosen' and 'rejected' are message "
                                     "lists that share the prompt turns)")
    if "completion" in obj:
        raise DatasetError(line, "use either 'completion' or 'chosen'/'rejected', not both")
    chosen, rejected = obj["chosen"], obj["rejected"]
    for key, value in (("chosen", chosen), ("rejected", rejected)):
        if not isinstance(value, (str, list)):
            raise DatasetError(line, f"{key!r} must be a string or a messages list, got {kind(value)}")
    if type(chosen) is not type(rejected):
        raise DatasetError(line, f"'chosen' and 'rejected' must both be strings or both message lists; got "
                                 f"{kind(chosen)} and {kind(rejected)}")
    if "prompt" not in obj:
        if isinstance(chosen, str):
            raise DatasetError(line, "'chosen'/'rejected' strings without a 'prompt' (TRL's standard implicit-prompt "
                                     "type) are not supported: the shared prompt cannot be told apart from the "
                                     "replies reliably. Put the shared beginning in 'prompt' and only the replies in "
                                     f"'chosen'/'rejected' ({_show('preference')}), or give message lists that share "
                                     "the prompt turns")
        return _implicit_preference(line, chosen, rejected, weight)
    prompt = obj["prompt"]
    if isinstance(chosen, str):
        if isinstance(prompt, str):
            messages: tuple[Message, ...] = (Message("user", prompt),)
        elif isinstance(prompt, list):
            messages = _prompt_turns(line, prompt, key="prompt")
        else:
            raise DatasetError(line, f"'prompt' must be a string or a messages list, got {kind(prompt)}")
        return _pair(line, messages, chosen, rejected, weight, "preference")
    if not isinstance(prompt, list):
        raise DatasetError(line, "'prompt' must be a messages list when 'chosen' and 'rejected' are message lists "
                                 f"({_show('conversational_preference')}), or give all three as strings")
    messages = _prompt_turns(line, prompt, key="prompt")
    replies = [parse_reply(line, key, value, allow_weight=False).content
               for key, value in (("chosen", chosen), ("rejected", rejected))]
    return _pair(line, messages, replies[0], replies[1], weight, "conversational_preference")


def _implicit_preference(line: int, chosen: list, rejected: list, weight: float) -> Example:
    c = parse_messages(line, chosen, key="chosen", allow_weight=False)
    r = parse_messages(line, rejected, key="rejected", allow_weight=False)
    shared = 0
    while shared < min(len(c), len(r)) and c[shared] == r[shared]:
        shared += 1
    if c == r:
        raise DatasetError(line, "'chosen' and 'rejected' are identical: there is no preference to learn")
    rest_c, rest_r = c[shared:], r[shared:]
    if not (len(rest_c) == len(rest_r) == 1 and rest_c[0].role == rest_r[0].role == "assistant"):
        raise DatasetError(line, "'chosen' and 'rejected' must share every turn (the implicit prompt) up to one "
                                 f"final assistant reply each; they differ from turn {shared} on "
                                 f"({len(rest_c)} and {len(rest_r)} turns left). Example: "
                                 + FORMAT_EXAMPLES["implicit_prompt_preference"])
    prompt = c[:shared]
    if not prompt or prompt[-1].role != "user":
        raise DatasetError(line, "the shared prompt turns must end with a user message")
    return _pair(line, prompt, rest_c[0].content, rest_r[0].content, weight, "implicit_prompt_preference")


def _openai_preference(line: int, obj: dict[str, Any], weight: float) -> Example:
    for key in ("input", "preferred_output", "non_preferred_output"):
        if key not in obj:
            raise DatasetError(line, f"missing {key!r}: OpenAI-style preference examples need 'input', "
                                     "'preferred_output' and 'non_preferred_output'")
    given = obj["input"]
    if not isinstance(given, dict) or "messages" not in given:
        raise DatasetError(line, "'input' must be an object with a 'messages' list")
    if given.get("tools"):
        raise DatasetError(line, "'input.tools': tool definitions are not supported yet; remove them")
    messages = _prompt_turns(line, given["messages"], key="input.messages")
    replies = [parse_reply(line, key, obj[key], allow_weight=False).content
               for key in ("preferred_output", "non_preferred_output")]
    return _pair(line, messages, replies[0], replies[1], weight, "openai_preference")


def _prompt_turns(line: int, raw: Any, *, key: str) -> tuple[Message, ...]:
    messages = parse_messages(line, raw, need_assistant=False, allow_weight=False, key=key)
    if messages[-1].role != "user":
        raise DatasetError(line, f"the prompt conversation ('{key}') must end with a user message")
    return messages


def _pair(line: int, messages: tuple[Message, ...], chosen: str, rejected: str, weight: float, fmt: Any) -> Example:
    if not chosen or not rejected:
        raise DatasetError(line, "'chosen' and 'rejected' must both be non-empty")
    if chosen == rejected:
        raise DatasetError(line, "'chosen' and 'rejected' are identical: there is no preference to learn")
    return Example(line=line, messages=messages, weight=weight, format=fmt, chosen=chosen, rejected=rejected)


def _refuse_tools(line: int, obj: dict[str, Any]) -> None:
    if obj.get("functions"):
        raise DatasetError(line, "'functions' is OpenAI's deprecated function-calling shape; give the functions "
                                 "as 'tools' ([{\"type\": \"function\", \"function\": {...}}]) with a 'messages' "
                                 "conversation whose assistant turns carry 'tool_calls'")
    if obj.get("tools") and "messages" not in obj:
        raise DatasetError(line, "'tools' go with a 'messages' conversation (assistant 'tool_calls', 'tool' "
                                 "results); " + _show("messages"))


def _tools(line: int, raw: Any) -> list[dict] | None:
    """A line's ``tools``: OpenAI tool objects (TRL writes the same shape), each a function with a name."""
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw:
        raise DatasetError(line, "'tools' must be a non-empty list of {\"type\": \"function\", \"function\": "
                                 "{\"name\": ..., \"parameters\": {...}}}")
    names = set()
    for i, tool in enumerate(raw):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or tool.get("type", "function") != "function" or not isinstance(
                fn.get("name"), str) or not fn["name"]:
            raise DatasetError(line, f"tools[{i}] must be {{\"type\": \"function\", \"function\": {{\"name\": "
                                     "..., \"parameters\": {...}}}")
        if fn["name"] in names:
            raise DatasetError(line, f"tools[{i}]: two tools are named {fn['name']!r}")
        if not isinstance(fn.get("parameters", {}), dict):
            raise DatasetError(line, f"tools[{i}].function.parameters must be a JSON Schema object")
        names.add(fn["name"])
    return raw


def _example_weight(line: int, obj: dict[str, Any]) -> float:
    if "weight" not in obj:
        return 1.0
    w = obj["weight"]
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or not 0 <= w <= 1:
        raise DatasetError(line, f"'weight' must be a number from 0 to 1, got {w!r}")
    return float(w)


def _show(fmt: str) -> str:
    return f"format '{fmt}', e.g. {FORMAT_EXAMPLES[fmt]}"


# Keys of other ecosystems' formats → the supported format closest to them, and how to convert.
_NEAR: dict[str, tuple[str, str]] = {
    "conversations": ("messages", "rename 'conversations' to 'messages' with 'role'/'content' turns "
                                  "(ShareGPT's 'from'/'value' become 'role'/'content')"),
    "conversation": ("messages", "rename it to 'messages'"),
    "dialog": ("messages", "rename it to 'messages'"),
    "contents": ("messages", "rename 'contents' to 'messages' with 'role'/'content' turns"),
    "instruction": ("prompt_completion", "put 'instruction' (and 'input') in 'prompt' and 'output' in 'completion'"),
    "input": ("prompt_completion", "rename 'input' to 'prompt' and 'output' to 'completion'"),
    "output": ("prompt_completion", "rename 'input' to 'prompt' and 'output' to 'completion'"),
    "question": ("prompt_completion", "rename 'question' to 'prompt' and 'answer' to 'completion'"),
    "answer": ("prompt_completion", "rename 'question' to 'prompt' and 'answer' to 'completion'"),
    "query": ("prompt_completion", "rename 'query' to 'prompt' and 'response' to 'completion'"),
    "response": ("prompt_completion", "rename 'query' to 'prompt' and 'response' to 'completion'"),
    "content": ("text", "rename 'content' to 'text'"),
    "accepted": ("preference", "use 'prompt', 'chosen' and 'rejected'"),
    "preferred": ("preference", "use 'prompt', 'chosen' and 'rejected'"),
}


def _nearest_format_hint(obj: dict[str, Any]) -> str:
    hits = [_NEAR[k] for k in obj if k in _NEAR]
    if isinstance(obj.get("input"), dict):  # OpenAI's preference shape with its replies missing or misnamed
        hits = [("openai_preference", "add 'preferred_output' and 'non_preferred_output'")]
    if hits:
        fmt, how = max(hits, key=lambda hit: sum(h[0] == hit[0] for h in hits))
        nearest = f"the nearest supported format is {FORMAT_LABELS[fmt]}: {how}; {_show(fmt)}"
    else:
        nearest = f"the most common one is {_show('messages')}"
    return (f"no supported format has the keys {sorted(obj)}; {nearest}. Supported: 'messages', 'text', "
            "'prompt'/'completion' (strings or message lists), preference pairs 'prompt'/'chosen'/'rejected' "
            "(strings or message lists, or 'chosen'/'rejected' lists sharing the prompt turns) and OpenAI's "
            "'input'/'preferred_output'/'non_preferred_output'")
