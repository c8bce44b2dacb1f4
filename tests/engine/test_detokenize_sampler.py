"""Unit tests: incremental detokenization, stop-string hold-back, sampling."""

from __future__ import annotations

import pytest
import torch

from tenfold.engine.detokenize import IncrementalDetokenizer, StopStringMatcher
from tenfold.engine.sampler import RowSampling, make_generator, sample_rows, validate_sampling
from tenfold.engine.types import EngineError, SamplingParams
from tenfold.models.registry import load_tokenizer


def test_multibyte_characters_are_never_split(tiny_path):
    tokenizer = load_tokenizer(tiny_path)
    text = "Café — naïve 世界 🎉🚀 done"
    ids = tokenizer.encode(text, add_special_tokens=False)
    prompt = tokenizer.encode("Say:", add_special_tokens=False)
    detok = IncrementalDetokenizer(tokenizer, prompt)
    pieces = [detok.add(i) for i in ids]
    pieces.append(detok.flush())
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)
    assert len(ids) > len([p for p in pieces if p])  # some tokens were partial characters


def feed(matcher: StopStringMatcher, chunks: list[str]) -> tuple[list[str], bool]:
    out, stopped = [], False
    for chunk in chunks:
        text, stopped = matcher.push(chunk)
        out.append(text)
        if stopped:
            break
    return out, stopped


def test_stop_string_spanning_chunks_is_held_back_and_removed():
    out, stopped = feed(StopStringMatcher(("END",)), ["Hello E", "N", "D tail"])
    assert stopped and out == ["Hello ", "", ""]


def test_false_alarm_is_released_once_disambiguated():
    matcher = StopStringMatcher(("\n\nUser:",))
    out, stopped = feed(matcher, ["a\n", "\nUs", "ually"])
    assert not stopped and out == ["a", "", "\n\nUsually"]
    assert matcher.flush() == ""
    matcher = StopStringMatcher(("xyz",))
    assert matcher.push("abcxy") == ("abc", False)
    assert matcher.flush() == "xy"  # end of generation without the stop: release the held text


def test_earliest_of_several_stops_wins_and_no_stops_passes_through():
    out, stopped = feed(StopStringMatcher(("bb", "a")), ["xxbba"])
    assert stopped and out == ["xx"]
    assert StopStringMatcher(()).push("anything") == ("anything", False)


def sample_next(logits, params, generator) -> int:
    return sample_rows(logits.unsqueeze(0), [RowSampling(params, generator, [])])[0][0]


def test_sampler_greedy_nucleus_and_seed():
    logits = torch.tensor([0.0, 3.0, 1.0, 2.9])
    greedy = SamplingParams(temperature=0)
    assert sample_next(logits, greedy, make_generator(None)) == 1
    narrow = SamplingParams(temperature=1.0, top_p=0.3)
    assert {sample_next(logits, narrow, make_generator(s)) for s in range(20)} == {1}
    wide = SamplingParams(temperature=5.0, top_p=1.0)
    draws = lambda seed: [sample_next(logits, wide, g) for g in [make_generator(seed)] for _ in range(30)]  # noqa: E731
    assert draws(3) == draws(3)
    assert len(set(draws(3))) > 1


@pytest.mark.parametrize(
    "params, field",
    [
        (SamplingParams(max_tokens=0), "max_tokens"),
        (SamplingParams(temperature=-1), "temperature"),
        (SamplingParams(top_p=1.5), "top_p"),
        (SamplingParams(stop=(3,)), "stop"),  # type: ignore[arg-type]
        (SamplingParams(top_k=-5), "top_k"),
        (SamplingParams(presence_penalty=3.0), "presence_penalty"),
        (SamplingParams(frequency_penalty=-2.5), "frequency_penalty"),
        (SamplingParams(logprobs=21), "top_logprobs"),
        (SamplingParams(stop_token_ids=(-1,)), "stop_token_ids"),
    ],
)
def test_validate_sampling_rejects(params, field):
    with pytest.raises(EngineError, match=field):
        validate_sampling(params)
