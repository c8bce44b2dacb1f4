"""Cost of a request in integer micro-dollars from the per-base-model price table (``Settings.prices``).

Owns: the arithmetic of inference and training. Cached prompt tokens bill at the cached-input rate, the rest of the prompt at the
input rate, completion tokens at the output rate; a batch request then takes the batch discount (basis
points). Everything is integer arithmetic with one half-up rounding per request, never per token, so the
ledger sums exactly; training bills its tokens at the training rate. Does not own: which price row applies (``Settings.price_for``) or writing rows.
"""

from __future__ import annotations

from decimal import Decimal

from tenfold.config import Price

MICRO = 1_000_000
BPS = 10_000


def inference_cost(price: Price, *, prompt_tokens: int, cached_tokens: int, completion_tokens: int,
                   discount_bps: int = 0) -> int:
    if min(prompt_tokens, cached_tokens, completion_tokens) < 0 or cached_tokens > prompt_tokens:
        raise ValueError("token counts must be non-negative and cached_tokens <= prompt_tokens")
    if not 0 <= discount_bps <= BPS:
        raise ValueError("discount_bps must be between 0 and 10000")
    numerator = ((prompt_tokens - cached_tokens) * price.input_per_mtok + cached_tokens * price.cached_input_per_mtok
                 + completion_tokens * price.output_per_mtok) * (BPS - discount_bps)
    denominator = MICRO * BPS
    return (numerator + denominator // 2) // denominator


def training_cost(price: Price, *, tokens: int) -> int:
    """Micro-dollars for ``tokens`` trained (one half-up rounding per job)."""
    return (int(tokens) * price.training_per_mtok + MICRO // 2) // MICRO


def usd(micro: int) -> str:
    """Micro-dollars as an exact decimal string with six places (``1234567`` → ``"1.234567"``)."""
    return str((Decimal(int(micro)) / MICRO).quantize(Decimal("0.000001")))


def to_micro(usd_amount: str | int | float) -> int:
    """A dollar amount typed by a person (``"12.50"``) → integer micro-dollars, exactly (via Decimal)."""
    value = Decimal(str(usd_amount)) * MICRO
    if value != value.to_integral_value():
        raise ValueError(f"{usd_amount} has more than six decimal places")
    return int(value)
