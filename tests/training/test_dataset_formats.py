"""Every accepted dataset format (TRL's standard and conversational types, OpenAI's chat and preference
formats): recognized and named, masked so that only the completion / assistant reply is trained, counted as
training tokenizes it, and trained by its recipe; near misses rejected with the line and the nearest format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, get_args

import pytest

from tenfold.training.data import DatasetError, parse_jsonl, validate_jsonl
from tenfold.training.examples import FORMAT_EXAMPLES, PREFERENCE_FORMATS, SFT_FORMATS, Format
from tenfold.training.tokenize import (
    DatasetStats,
    count_tokens,
    tokenize_dataset,
    tokenize_example,
    tokenize_preferences,
)
from tests.training.conftest import write_jsonl


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def bot(text: str, **extra: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": text, **extra}


SFT_LINES: dict[str, dict[str, Any]] = {
    "messages": {"messages": [{"role": "system", "content": "Be short."}, user("Sky color?"), bot("Blue.")]},
    "text": {"text": "The sky is blue."},
    "prompt_completion": {"prompt": "Sky color?", "completion": "Blue."},
    "conversational_prompt_completion": {"prompt": [user("Grass color?"), bot("Green."), user("Sky color?")],
                                         "completion": [bot("Blue.")]},
}
PREFERENCE_LINES: dict[str, dict[str, Any]] = {
    "preference": {"prompt": "Sky color?", "chosen": "Blue.", "rejected": "Green."},
    "conversational_preference": {"prompt": [user("Sky color?")], "chosen": [bot("Blue.")],
                                  "rejected": [bot("Green.")]},
    "implicit_prompt_preference": {"chosen": [user("Sky color?"), bot("Blue.")],
                                   "rejected": [user("Sky color?"), bot("Green.")]},
    "openai_preference": {"input": {"messages": [user("Sky color?")]}, "preferred_output": [bot("Blue.")],
                          "non_preferred_output": [bot("Green.")]},
}


def one(row: dict[str, Any]):
    return parse_jsonl((json.dumps(row) + "\n").encode())[0]


def trained_text(tokenizer: Any, tok) -> list[str]:
    spans, cur = [], []
    for token, weight in zip(tok.input_ids, tok.weights):
        if weight > 0:
            cur.append(token)
        elif cur:
            spans.append(tokenizer.decode(cur))
            cur = []
    return spans + ([tokenizer.decode(cur)] if cur else [])


def test_every_format_has_a_name_an_example_and_a_file_format_value() -> None:
    from tenfold.types.files import FileFormat

    assert set(get_args(Format)) == SFT_FORMATS | PREFERENCE_FORMATS == set(FORMAT_EXAMPLES)
    assert set(get_args(FileFormat)) == set(get_args(Format)) | {"batch"}
    for fmt, line in FORMAT_EXAMPLES.items():  # the examples the hints show are themselves valid
        assert validate_jsonl((line + "\n").encode()).format == fmt


@pytest.mark.parametrize("fmt", list(SFT_LINES))
def test_sft_formats_mask_all_but_the_reply(tokenizer, fmt: str) -> None:
    row = {**SFT_LINES[fmt], "weight": 0.5}
    summary = validate_jsonl((json.dumps(row) + "\n").encode())
    assert summary.format == fmt
    tok = tokenize_example(tokenizer, summary.examples[0])
    assert {w for w in tok.weights if w > 0} == {0.5}
    if fmt == "text":  # raw text, no chat template, every token trained, EOS appended
        assert tokenizer.decode(tok.input_ids) == "The sky is blue." + tokenizer.eos_token
        assert tok.n_trainable == len(tok.input_ids)
    else:  # only the final reply: not the system prompt, the question or a few-shot assistant turn
        assert trained_text(tokenizer, tok) == ["Blue.<|im_end|>"]
        assert tokenizer.decode(tok.input_ids).startswith("<|im_start|>system\n")
    count = count_tokens(tokenizer, summary.examples)
    assert (count.n_tokens, count.n_counted) == (len(tok.input_ids), 1)


@pytest.mark.parametrize("fmt", list(PREFERENCE_LINES))
def test_preference_formats_score_only_the_replies(tokenizer, fmt: str) -> None:
    summary = validate_jsonl((json.dumps(PREFERENCE_LINES[fmt]) + "\n").encode())
    assert summary.format == fmt
    ex = summary.examples[0]
    assert [(m.role, m.content) for m in ex.messages] == [("user", "Sky color?")]
    assert (ex.chosen, ex.rejected) == ("Blue.", "Green.")
    stats = DatasetStats()
    (pair,) = tokenize_preferences(tokenizer, summary.examples, max_length=10_000, stats=stats)
    assert trained_text(tokenizer, pair.chosen) == ["Blue.<|im_end|>"]
    assert trained_text(tokenizer, pair.rejected) == ["Green.<|im_end|>"]
    assert count_tokens(tokenizer, summary.examples).n_tokens == stats.n_tokens == pair.n_tokens


def test_all_preference_formats_tokenize_identically(tokenizer) -> None:
    pairs = [tokenize_preferences(tokenizer, [one(row)], max_length=10_000)[0] for row in PREFERENCE_LINES.values()]
    assert all(p.chosen == pairs[0].chosen and p.rejected == pairs[0].rejected for p in pairs)


def test_completion_weight_and_train_on_inputs(tokenizer) -> None:
    row = SFT_LINES["conversational_prompt_completion"]
    tok = tokenize_example(tokenizer, one(row), train_on_inputs=True)
    assert tok.n_trainable == len(tok.input_ids)
    dropped = one({**row, "completion": [bot("Blue.", weight=0)]})
    stats = DatasetStats()
    with pytest.raises(Exception, match="no example has any trainable tokens"):
        tokenize_dataset(tokenizer, [dropped], max_length=10_000, stats=stats)
    assert stats.dropped_lines == [1] and count_tokens(tokenizer, [dropped]).n_counted == 0


NEAR_MISSES = [
    ({"instruction": "Add", "input": "2+2", "output": "4"}, "nearest supported format is 'prompt'/'completion'"),
    ({"conversations": [{"from": "human", "value": "hi"}]}, "nearest supported format is chat ('messages')"),
    ({"question": "q", "answer": "a"}, "rename 'question' to 'prompt'"),
    ({"body": "x"}, "the most common one is format 'messages'"),
    ({"input": {"messages": [user("q")]}, "preferred": [bot("a")]}, "nearest supported format is OpenAI preference"),
    ({"prompt": "The sky is"}, "TRL's prompt-only type"),
    ({"prompt": "q", "completion": "a", "label": True}, "unpaired preference type (KTO)"),
    ({"prompt": "q", "completions": ["a"], "labels": [True]}, "stepwise supervision"),
    ({"chosen": "The sky is blue.", "rejected": "The sky is green."}, "standard implicit-prompt type"),
    ({"prompt": "q", "chosen": [bot("a")], "rejected": "b"}, "must both be strings or both message lists"),
    ({"prompt": "q", "chosen": [bot("a")], "rejected": [bot("b")]}, "'prompt' must be a messages list"),
    ({"prompt": [user("q")], "completion": "a"}, "must both be strings (format 'prompt_completion'"),
    ({"prompt": [user("q")], "completion": [bot("a"), bot("b")]}, "'completion' must be a list with one assistant"),
    ({"prompt": [user("q")], "completion": [user("a")]}, "completion[0] must have role 'assistant'"),
    ({"prompt": [user("q"), bot("a")], "completion": [bot("b")]}, "must end with a user message"),
    ({"prompt": [user("q"), bot("x", weight=1)], "completion": [bot("b")]}, "'weight' is not used here"),
    ({"chosen": [user("q"), bot("a")], "rejected": [user("other"), bot("b")]}, "share every turn"),
    ({"chosen": [user("q"), bot("a")], "rejected": [user("q"), bot("a")]}, "identical"),
    ({"prompt": [user("q")], "chosen": [bot("a", weight=1)], "rejected": [bot("b")]}, "weigh the whole pair"),
    ({"messages": [user("q"), bot("a")], "tools": [{"type": "function"}]}, "tools[0] must be"),
    ({"input": {"messages": [user("q")], "tools": [{"type": "function"}]}, "preferred_output": [bot("a")],
      "non_preferred_output": [bot("b")]}, "'input.tools'"),
    ({"text": ""}, "'text' is empty"),
    ({"text": "a", "completion": "b"}, "use either 'text' or 'completion'"),
]


@pytest.mark.parametrize(("row", "fragment"), NEAR_MISSES)
def test_near_misses_name_the_line_and_the_nearest_format(row: dict[str, Any], fragment: str) -> None:
    data = (json.dumps(SFT_LINES["messages"]) + "\n" + json.dumps(row) + "\n").encode()
    with pytest.raises(DatasetError) as info:
        validate_jsonl(data)
    assert info.value.line == 2 and fragment in info.value.message, info.value.message


def test_one_format_per_file() -> None:
    data = "".join(json.dumps(r) + "\n" for r in (PREFERENCE_LINES["preference"],
                                                   PREFERENCE_LINES["conversational_preference"])).encode()
    with pytest.raises(DatasetError, match="line 2: this line uses the 'conversational_preference' format"):
        validate_jsonl(data)


def _rows(line: dict[str, Any], n: int = 8) -> list[dict[str, Any]]:
    return [json.loads(json.dumps(line).replace("Sky", f"Sky {i}")) for i in range(n)]


@pytest.mark.parametrize("fmt", list(SFT_LINES) + list(PREFERENCE_LINES))
def test_each_format_trains_with_its_recipe(make_spec, tmp_path: Path, fmt: str) -> None:
    from tenfold.training.main import run_training

    preference = fmt in PREFERENCE_LINES
    rows = _rows(PREFERENCE_LINES[fmt] if preference else SFT_LINES[fmt])
    valid = write_jsonl(tmp_path / "valid.jsonl", rows[:2])
    spec = make_spec(rows=rows, method="dpo" if preference else "sft", n_epochs=1, batch_size=4,
                     checkpoint_every=0, validation_file=str(valid))
    events: list[dict[str, Any]] = []
    done = run_training(spec, events.append)
    assert done["steps"] == 2 and done["trained_tokens"] > 0 and done["valid_loss"] > 0
    assert not [e for e in events if e["type"] == "warning"]
