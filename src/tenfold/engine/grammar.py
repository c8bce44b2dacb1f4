"""Constrained decoding: a ``Constraint`` (a JSON schema or a Lark grammar) → a per-request token matcher, and
the per-row token masks the sampler applies, so each row of a batch follows its own grammar (or none).

Built on llguidance (chosen by measurement, bench/RESULTS.md: masks in tens of microseconds per row on this
engine's 49k vocabulary, compile in about a millisecond, and no dependencies, where xgrammar would bring
triton and tvm-ffi onto a CPU install). Owns: the llguidance tokenizer of one base model (built once), the
cache of compiled grammars by constraint digest (a template matcher per digest; each request gets a cheap
copy), whitespace bounds (JSON is compact: no free whitespace), validation of a constraint against a time
and size budget (``check``: what the api calls before anything reaches the engine), filling masks and
applying them to logits. Does not own: turning OpenAI ``response_format`` / tools into a constraint
(``tenfold.inference.structured``), or when a sequence ends (``async_engine``: a finished grammar ends it).
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from typing import Any

import torch

from tenfold.engine.types import Constraint, EngineError

# Compact JSON: no whitespace between tokens, so a model cannot spend its budget on spaces and newlines.
JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ",", "key_separator": ":"}
CACHE_SIZE = 256
_BITS = None


def grammar_of(constraint: Constraint) -> str:
    """The llguidance grammar (its JSON form) of a constraint."""
    import llguidance

    if constraint.kind == "json_schema":
        try:
            schema = json.loads(constraint.value)
        except ValueError as e:
            raise EngineError(f"the JSON schema is not valid JSON: {e}") from None
        return llguidance.LLMatcher.grammar_from_json_schema(schema, defaults=JSON_OPTIONS)
    if constraint.kind == "lark":
        return llguidance.LLMatcher.grammar_from_lark(constraint.value)
    raise EngineError(f"unknown constraint kind {constraint.kind!r}")


def limits() -> Any:
    """Bounds on grammar size and per-token work, so a hostile schema cannot stall a step."""
    import llguidance

    return llguidance.LLParserLimits(max_grammar_size=500_000, step_lexer_fuel=2_000_000, initial_lexer_fuel=20_000_000)


class Grammars:
    """One base model's compiled grammars: ``matcher(constraint)`` gives a fresh matcher (safe from any thread;
    a new grammar compiles on the caller's thread in about a millisecond: the engine calls it from a worker
    thread, never its own or the event loop). ``check`` results are cached by digest too."""

    def __init__(self, hf_tokenizer: Any, vocab_size: int, eos_token_ids: set[int] | None = None) -> None:
        import llguidance.hf

        eos = hf_tokenizer.eos_token_id
        if eos is None:
            eos = sorted(eos_token_ids or ())[:1]
        self.tokenizer = llguidance.hf.from_tokenizer(hf_tokenizer, n_vocab=vocab_size, eos_token=eos)
        self.vocab_size = vocab_size
        self._templates: OrderedDict[str, Any] = OrderedDict()
        self._checked: OrderedDict[str, list[str]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.compile_seconds = 0.0  # total spent compiling templates (misses)

    def check(self, constraint: Constraint) -> list[str]:
        """Compile the constraint (within ``limits``); raise ``EngineError`` with the reason if it cannot serve,
        else return llguidance's warnings (e.g. schema keywords it does not implement)."""
        import llguidance

        key = constraint.digest
        with self._lock:
            if key in self._checked:
                self._checked.move_to_end(key)
                return list(self._checked[key])
        grammar = grammar_of(constraint)
        is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar, self.tokenizer,
                                                                                 limits=limits())
        if is_error:
            raise EngineError(messages[0] if messages else "the grammar does not compile")
        with self._lock:  # a schema that passed (or only warned) is not compiled again to check it
            self._checked[key] = list(messages)
            while len(self._checked) > CACHE_SIZE:
                self._checked.popitem(last=False)
        return list(messages)

    def cached_matcher(self, constraint: Constraint) -> Any | None:
        """A fresh matcher from the cache (a copy: microseconds), or None when the grammar must be compiled."""
        with self._lock:
            template = self._templates.get(constraint.digest)
            if template is None:
                return None
            self._templates.move_to_end(constraint.digest)
            self.hits += 1
        return template.deep_copy()

    def matcher(self, constraint: Constraint) -> Any:
        """A fresh matcher: from the cache, else compiled (blocking: call it off the event loop) and cached."""
        import llguidance

        cached = self.cached_matcher(constraint)
        if cached is not None:
            return cached
        start = time.perf_counter()
        template = llguidance.LLMatcher(self.tokenizer, grammar_of(constraint), log_level=0, limits=limits())
        if template.is_error():
            raise EngineError(f"the grammar does not compile: {template.get_error()}")
        with self._lock:
            self.misses += 1
            self.compile_seconds += time.perf_counter() - start
            self._templates[constraint.digest] = template
            while len(self._templates) > CACHE_SIZE:
                self._templates.popitem(last=False)
        return template.deep_copy()

    @property
    def cached(self) -> int:
        return len(self._templates)


def _bit_table() -> torch.Tensor:
    global _BITS
    if _BITS is None:
        _BITS = torch.tensor([1 << i for i in range(31)] + [-(1 << 31)], dtype=torch.int32)
    return _BITS


def mask_logits(logits: torch.Tensor, rows: list[tuple[int, Any]], vocab_size: int) -> None:
    """For each ``(row, matcher)``: set the logits of tokens the matcher forbids next to -inf, in place."""
    if not rows:
        return
    words = (vocab_size + 31) // 32
    bitmask = torch.empty((len(rows), words), dtype=torch.int32)
    for i, (_, matcher) in enumerate(rows):
        matcher.unsafe_compute_mask_ptr(bitmask[i].data_ptr(), words * 4)
    allowed = (bitmask.unsqueeze(-1) & _bit_table()).ne(0).reshape(len(rows), words * 32)
    width = min(logits.shape[1], words * 32)
    index = torch.tensor([r for r, _ in rows], dtype=torch.long)
    sub = logits.index_select(0, index)
    sub[:, :width].masked_fill_(~allowed[:, :width], float("-inf"))
    if logits.shape[1] > width:
        sub[:, width:] = float("-inf")
    logits.index_copy_(0, index, sub)
