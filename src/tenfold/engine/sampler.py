"""Next-token sampling: greedy, temperature, top-p (nucleus), per-request seeded generators.

Owns: validating ``SamplingParams`` and picking one token id from a row of logits. Does not own: stop
strings and text (``detokenize``) or the model forward (``simple``).
"""

from __future__ import annotations

import secrets

import torch

from tenfold.engine.types import EngineError, SamplingParams

GREEDY_EPSILON = 1e-5  # temperatures below this are greedy


def validate_sampling(params: SamplingParams) -> None:
    """Raise ``EngineError`` for sampling values the engine cannot honour."""
    if not isinstance(params.max_tokens, int) or params.max_tokens < 1:
        raise EngineError(f"max_tokens must be a positive integer, got {params.max_tokens!r}")
    if params.temperature is None or params.temperature < 0 or params.temperature != params.temperature:
        raise EngineError(f"temperature must be >= 0, got {params.temperature!r}")
    if params.top_p is None or not (0 < params.top_p <= 1):
        raise EngineError(f"top_p must be in (0, 1], got {params.top_p!r}")
    if params.seed is not None and not isinstance(params.seed, int):
        raise EngineError(f"seed must be an integer, got {params.seed!r}")
    for stop in params.stop:
        if not isinstance(stop, str):
            raise EngineError(f"stop strings must be strings, got {stop!r}")


def make_generator(seed: int | None) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (same seed → same samples), or with fresh randomness."""
    generator = torch.Generator(device="cpu")
    generator.manual_seed(seed % (2**63) if seed is not None else secrets.randbits(63))
    return generator


def is_greedy(params: SamplingParams) -> bool:
    return params.temperature < GREEDY_EPSILON


def sample_next(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator) -> int:
    """Pick the next token id from ``logits`` (shape ``[vocab]``)."""
    logits = logits.float()
    if is_greedy(params):
        return int(torch.argmax(logits).item())
    probs = torch.softmax(logits / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, sorted_ids = torch.sort(probs, descending=True)
        cumulative = torch.cumsum(sorted_probs, dim=-1)
        # Keep the smallest prefix whose mass reaches top_p (always at least the first token).
        keep = (cumulative - sorted_probs) < params.top_p
        keep[0] = True
        kept = sorted_probs * keep
        choice = torch.multinomial(kept / kept.sum(), 1, generator=generator)
        return int(sorted_ids[choice].item())
    return int(torch.multinomial(probs, 1, generator=generator).item())
