"""OpenAI response shapes of chat and legacy completions: whole responses, stream chunks, usage, logprobs.

Owns: the JSON of a ``chat.completion`` / ``text_completion`` (with ``tool_calls`` when the model called
tools), of each ``chat.completion.chunk`` /
streamed ``text_completion``, of ``usage`` (with ``prompt_tokens_details.cached_tokens``) and the two
logprobs shapes: chat (``{"content": [{"token", "logprob", "bytes", "top_logprobs"}], "refusal"}``) and
legacy (``tokens``, ``token_logprobs``, ``top_logprobs``, ``text_offset``). Token text comes from the
engine's ``TokenLogprob`` entries. Does not own: running requests (``streams``) or HTTP.
"""

from __future__ import annotations

from tenfold.engine.types import TokenLogprob


def usage_body(prompt: int, cached: int, completion: int) -> dict:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached}, "completion_tokens_details": None}


def choice(kind: str, text: str | None, finish: str | None, *, delta: bool, first: bool = False, index: int = 0,
           logprobs: dict | None = None, tool_calls: list[dict] | None = None) -> dict:
    """One choice; ``tool_calls`` (chat only): the calls of a whole message, or tool-call delta entries."""
    if kind == "chat":
        if delta:
            d = {"role": "assistant", "content": text} if first else ({"content": text} if text else {})
            if tool_calls:
                d["tool_calls"] = tool_calls
            return {"index": index, "delta": d, "finish_reason": finish, "logprobs": logprobs}
        message = {"role": "assistant", "content": text, "refusal": None}
        if tool_calls:
            message["tool_calls"] = tool_calls
        return {"index": index, "message": message, "finish_reason": finish, "logprobs": logprobs}
    return {"index": index, "text": text, "finish_reason": finish, "logprobs": logprobs}


def response_body(kind: str, *, request_id: str, created: int, model: str, choices: list[dict], usage: dict) -> dict:
    return {"id": request_id, "object": "chat.completion" if kind == "chat" else "text_completion",
            "created": created, "model": model, "choices": choices, "usage": usage, "system_fingerprint": None}


def chunk_body(kind: str, *, request_id: str, created: int, model: str, choices: list[dict],
               usage: dict | None = None, with_usage: bool = False) -> dict:
    out = {"id": request_id, "object": "chat.completion.chunk" if kind == "chat" else "text_completion",
           "created": created, "model": model, "choices": choices, "system_fingerprint": None}
    if with_usage:
        out["usage"] = usage
    return out


def _entry(text: str, logprob: float) -> dict:
    return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}


def chat_logprobs(entries: list[TokenLogprob]) -> dict:
    content = []
    for e in entries:
        item = _entry(e.text, e.logprob)
        item["top_logprobs"] = [_entry(text, lp) for text, (_tid, lp) in zip(e.top_text, e.top)]
        content.append(item)
    return {"content": content, "refusal": None}


def completion_logprobs(entries: list[TokenLogprob], *, offset: int = 0) -> dict:
    tokens, values, tops, offsets = [], [], [], []
    for e in entries:
        tokens.append(e.text)
        values.append(e.logprob)
        tops.append({text: lp for text, (_tid, lp) in zip(e.top_text, e.top)} if e.top else None)
        offsets.append(offset)
        offset += len(e.text)
    return {"tokens": tokens, "token_logprobs": values, "top_logprobs": tops, "text_offset": offsets}


class LogprobShaper:
    """Shapes one choice's logprobs, delta by delta (legacy completions count text offsets across deltas)."""

    def __init__(self, kind: str) -> None:
        self.kind, self.offset = kind, 0

    def shape(self, entries: list[TokenLogprob] | None) -> dict | None:
        if entries is None:
            return None
        if self.kind == "chat":
            return chat_logprobs(entries)
        out = completion_logprobs(entries, offset=self.offset)
        self.offset += sum(len(t) for t in out["tokens"])
        return out
