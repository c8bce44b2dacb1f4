"""Next-token sampling for a batch of rows, each with its own parameters and seeded generator.

Owns: validating ``SamplingParams``; grammar masks (a constrained row samples only allowed tokens),
presence/frequency penalties, temperature, top_k, top_p (nucleus), greedy and seeded sampling, and
logprobs/top_logprobs. A row's result depends only on its own logits,
parameters and generator, never on the other rows in the batch. Logprobs are those of the model's
distribution (log-softmax of the raw logits), as OpenAI reports them. Does not own: stop strings and
text (``detokenize``), or when a sequence finishes (``async_engine``).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import torch

from tenfold.engine.grammar import mask_logits
from tenfold.engine.types import EngineError, SamplingParams, TokenLogprob

GREEDY_EPSILON = 1e-5  # temperatures below this are greedy
MAX_TOP_LOGPROBS = 20


def validate_sampling(params: SamplingParams, vocab_size: int | None = None) -> None:
    """Raise ``EngineError`` for sampling values the engine cannot honour."""
    if not isinstance(params.max_tokens, int) or params.max_tokens < 1:
        raise EngineError(f"max_tokens must be a positive integer, got {params.max_tokens!r}")
    if params.temperature is None or params.temperature < 0 or params.temperature != params.temperature:
        raise EngineError(f"temperature must be >= 0, got {params.temperature!r}")
    if params.top_p is None or not (0 < params.top_p <= 1):
        raise EngineError(f"top_p must be in (0, 1], got {params.top_p!r}")
    if not isinstance(params.top_k, int) or params.top_k < -1:
        raise EngineError(f"top_k must be -1, 0 (off) or a positive integer, got {params.top_k!r}")
    if params.seed is not None and not isinstance(params.seed, int):
        raise EngineError(f"seed must be an integer, got {params.seed!r}")
    for name in ("presence_penalty", "frequency_penalty"):
        value = getattr(params, name)
        if not isinstance(value, (int, float)) or not (-2.0 <= value <= 2.0):
            raise EngineError(f"{name} must be between -2.0 and 2.0, got {value!r}")
    if params.logprobs is not None and not (0 <= params.logprobs <= MAX_TOP_LOGPROBS):
        raise EngineError(f"top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}, got {params.logprobs!r}")
    for stop in params.stop:
        if not isinstance(stop, str):
            raise EngineError(f"stop strings must be strings, got {stop!r}")
    for tid in params.stop_token_ids:
        if not isinstance(tid, int) or tid < 0 or (vocab_size is not None and tid >= vocab_size):
            raise EngineError(f"stop_token_ids must be token ids in [0, {vocab_size}), got {tid!r}")


def make_generator(seed: int | None) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (same seed → same samples), or with fresh randomness."""
    generator = torch.Generator(device="cpu")
    generator.manual_seed(seed % (2**63) if seed is not None else secrets.randbits(63))
    return generator


def is_greedy(params: SamplingParams) -> bool:
    return params.temperature < GREEDY_EPSILON


@dataclass
class RowSampling:
    params: SamplingParams
    generator: torch.Generator
    output_ids: list[int]
    matcher: Any = None  # an llguidance matcher when the row's output is constrained (``grammar``)


def _penalize(logits: torch.Tensor, params: SamplingParams, output_ids: list[int]) -> torch.Tensor:
    if not output_ids or (params.presence_penalty == 0 and params.frequency_penalty == 0):
        return logits
    ids = torch.tensor(output_ids, dtype=torch.long)
    counts = torch.bincount(ids, minlength=logits.shape[-1]).to(logits.dtype)
    return logits - params.frequency_penalty * counts - params.presence_penalty * (counts > 0).to(logits.dtype)


def _pick(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator) -> int:
    if is_greedy(params):
        return int(torch.argmax(logits).item())
    logits = logits / params.temperature
    if params.top_k > 0 and params.top_k < logits.shape[-1]:
        kth = torch.topk(logits, params.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if params.top_p < 1.0:
        # stable: equal probabilities (common where logits carry bfloat16 precision) keep token-id order, so
        # the nucleus, and the token a seed draws from it, does not depend on the batch around the row
        sorted_probs, sorted_ids = torch.sort(probs, descending=True, stable=True)
        cumulative = torch.cumsum(sorted_probs, dim=-1)
        keep = (cumulative - sorted_probs) < params.top_p  # smallest prefix reaching top_p, at least one
        keep[0] = True
        kept = sorted_probs * keep
        choice = torch.multinomial(kept / kept.sum(), 1, generator=generator)
        return int(sorted_ids[choice].item())
    return int(torch.multinomial(probs, 1, generator=generator).item())


def sample_rows(logits: torch.Tensor, rows: list[RowSampling]) -> list[tuple[int, TokenLogprob | None]]:
    """One token per row of ``logits`` [rows, vocab] (float32). A constrained row samples only what its grammar
    allows next (its matcher then consumes the token); its logprobs stay those of the model's distribution."""
    out: list[tuple[int, TokenLogprob | None]] = []
    constrained = [(i, r.matcher) for i, r in enumerate(rows) if r.matcher is not None]
    raw: dict[int, torch.Tensor] = {}
    if constrained:
        raw = {i: logits[i].clone() for i, _ in constrained if rows[i].params.logprobs is not None}
        mask_logits(logits, constrained, logits.shape[-1])
    plain_greedy = [i for i, r in enumerate(rows) if is_greedy(r.params) and r.params.presence_penalty == 0
                    and r.params.frequency_penalty == 0]
    greedy_ids = {}
    if plain_greedy:
        idx = torch.tensor(plain_greedy, dtype=torch.long)
        greedy_ids = dict(zip(plain_greedy, torch.argmax(logits.index_select(0, idx), dim=-1).tolist()))
    for i, row in enumerate(rows):
        token = greedy_ids.get(i)
        if token is None:
            token = _pick(_penalize(logits[i], row.params, row.output_ids), row.params, row.generator)
        if row.matcher is not None:
            row.matcher.consume_token(token)
        lp = None
        if row.params.logprobs is not None:
            logp = torch.log_softmax(raw.get(i, logits[i]), dim=-1)
            top: tuple[tuple[int, float], ...] = ()
            if row.params.logprobs > 0:
                values, ids = torch.topk(logp, row.params.logprobs)
                top = tuple(zip(ids.tolist(), values.tolist()))
            lp = TokenLogprob(token, float(logp[token]), top)
        out.append((token, lp))
    return out
