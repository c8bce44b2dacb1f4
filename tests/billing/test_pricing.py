"""Price arithmetic in integer micro-dollars: cached rate, batch discount, one rounding per request."""

from __future__ import annotations

from fractions import Fraction

import pytest

from tenfold.billing.pricing import inference_cost, to_micro, usd
from tenfold.config import DEFAULT_BASE_MODEL, Price, Settings

ODD = Price(input_per_mtok=1_234_567, cached_input_per_mtok=345_679, output_per_mtok=2_345_671,
            batch_discount_bps=5000)


def exact(price: Price, p: int, c: int, o: int, bps: int = 0) -> int:
    x = Fraction((p - c) * price.input_per_mtok + c * price.cached_input_per_mtok + o * price.output_per_mtok,
                 1_000_000) * Fraction(10_000 - bps, 10_000)
    return int(x + Fraction(1, 2))  # half up


@pytest.mark.parametrize("p,c,o", [(0, 0, 0), (1, 0, 0), (13, 5, 7), (1000, 999, 1), (123_457, 64_000, 9_999)])
@pytest.mark.parametrize("bps", [0, 5000, 2500, 10_000])
def test_cost_matches_exact_rational_arithmetic(p, c, o, bps):
    assert inference_cost(ODD, prompt_tokens=p, cached_tokens=c, completion_tokens=o, discount_bps=bps) == \
        exact(ODD, p, c, o, bps)


def test_cached_tokens_bill_at_the_cached_rate_and_completion_at_full_rate():
    full = inference_cost(ODD, prompt_tokens=1_000_000, cached_tokens=0, completion_tokens=1_000_000)
    cached = inference_cost(ODD, prompt_tokens=1_000_000, cached_tokens=1_000_000, completion_tokens=1_000_000)
    assert full == ODD.input_per_mtok + ODD.output_per_mtok
    assert cached == ODD.cached_input_per_mtok + ODD.output_per_mtok
    half = inference_cost(ODD, prompt_tokens=1_000_000, cached_tokens=0, completion_tokens=1_000_000,
                          discount_bps=ODD.batch_discount_bps)
    assert half == (full + 1) // 2


def test_bad_counts_are_refused():
    for kw in ({"prompt_tokens": 1, "cached_tokens": 2, "completion_tokens": 0},
               {"prompt_tokens": -1, "cached_tokens": 0, "completion_tokens": 0}):
        with pytest.raises(ValueError):
            inference_cost(ODD, **kw)
    with pytest.raises(ValueError):
        inference_cost(ODD, prompt_tokens=1, cached_tokens=0, completion_tokens=0, discount_bps=10_001)


def test_price_rows_adapters_bill_at_base_unless_configured():
    s = Settings(prices={"default": Price(input_per_mtok=1), DEFAULT_BASE_MODEL: Price(input_per_mtok=2),
                         "ftjob-special": Price(input_per_mtok=3)})
    assert s.price_for(DEFAULT_BASE_MODEL).input_per_mtok == 2
    assert s.price_for(DEFAULT_BASE_MODEL, "ftjob-other").input_per_mtok == 2  # adapter → its base's row
    assert s.price_for(DEFAULT_BASE_MODEL, "ftjob-special").input_per_mtok == 3  # configured adapter row
    assert s.price_for("unknown-base").input_per_mtok == 1
    assert Settings(prices={}).price_for("x").input_per_mtok > 0  # falls back to the built-in default row
    assert Price().batch_discount_bps == 5000


def test_money_strings_are_exact():
    assert usd(1_234_567) == "1.234567" and usd(0) == "0.000000" and usd(5) == "0.000005"
    assert to_micro("12.50") == 12_500_000 and to_micro(3) == 3_000_000
    with pytest.raises(ValueError):
        to_micro("0.0000001")
