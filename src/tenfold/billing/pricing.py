"""Cost of a request in integer micro-dollars from the per-base-model price table (``Settings.prices``).

Owns: the arithmetic. Cached prompt tokens bill at the cached-input rate, the rest of the prompt at the
input rate, completion tokens at the output rate. Rounds half up once per request, never per token.
"""

from __future__ import annotations

from tenfold.config import Price


def inference_cost(price: Price, *, prompt_tokens: int, cached_tokens: int, completion_tokens: int) -> int:
    if min(prompt_tokens, cached_tokens, completion_tokens) < 0 or cached_tokens > prompt_tokens:
        raise ValueError("token counts must be non-negative and cached_tokens <= prompt_tokens")
    numerator = ((prompt_tokens - cached_tokens) * price.input_per_mtok + cached_tokens * price.cached_input_per_mtok
                 + completion_tokens * price.output_per_mtok)
    return (numerator + 500_000) // 1_000_000
