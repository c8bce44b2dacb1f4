"""OpenAI ``logprobs`` shapes from the engine's ``TokenLogprob`` entries.

Owns: the chat shape (``{"content": [{"token", "logprob", "bytes", "top_logprobs"}], "refusal"}``) and the
legacy completions shape (``tokens``, ``token_logprobs``, ``top_logprobs``, ``text_offset``). Token strings
come from ``decode`` (one token id → its text). Does not own: choosing or computing logprobs (the engine).
"""

from __future__ import annotations

from collections.abc import Callable

from tenfold.engine.types import TokenLogprob


def _entry(decode: Callable[[int], str], token_id: int, logprob: float) -> dict:
    text = decode(token_id)
    return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}


def chat_logprobs(entries: list[TokenLogprob], decode: Callable[[int], str]) -> dict:
    content = []
    for e in entries:
        item = _entry(decode, e.token_id, e.logprob)
        item["top_logprobs"] = [_entry(decode, tid, lp) for tid, lp in e.top]
        content.append(item)
    return {"content": content, "refusal": None}


def completion_logprobs(entries: list[TokenLogprob], decode: Callable[[int], str], *, offset: int = 0) -> dict:
    tokens, values, tops, offsets = [], [], [], []
    for e in entries:
        text = decode(e.token_id)
        tokens.append(text)
        values.append(e.logprob)
        tops.append({decode(tid): lp for tid, lp in e.top} if e.top else None)
        offsets.append(offset)
        offset += len(text)
    return {"tokens": tokens, "token_logprobs": values, "top_logprobs": tops, "text_offset": offsets}
