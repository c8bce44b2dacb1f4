"""Loss masks verified against the chat template: assistant-only spans decode to exactly the replies."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tenfold.training.data import parse_jsonl
from tenfold.training.errors import TemplateError, TrainingUserError
from tenfold.training.tokenize import tokenize_dataset, tokenize_example


def parse_one(row: dict[str, Any]):
    return parse_jsonl((json.dumps(row) + "\n").encode())[0]


def spans(tok) -> list[list[int]]:
    out, cur = [], []
    for token, weight in zip(tok.input_ids, tok.weights):
        if weight > 0:
            cur.append(token)
        elif cur:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out


def test_single_turn_span_is_reply_plus_end_of_turn(tokenizer) -> None:
    ex = parse_one({"messages": [{"role": "user", "content": "What is 2+2?"},
                                 {"role": "assistant", "content": '{"answer": "4"}'}]})
    tok = tokenize_example(tokenizer, ex)
    assert [tokenizer.decode(s) for s in spans(tok)] == ['{"answer": "4"}<|im_end|>']
    text = tokenizer.decode(tok.input_ids)
    assert text.startswith("<|im_start|>system\n") and "<|im_start|>user\nWhat is 2+2?<|im_end|>" in text


def test_multi_turn_trains_every_assistant_turn_and_respects_weight(tokenizer) -> None:
    row = {"messages": [{"role": "system", "content": "Be short."},
                        {"role": "user", "content": "Hi"},
                        {"role": "assistant", "content": "Hello!"},
                        {"role": "user", "content": "Name a color"},
                        {"role": "assistant", "content": "Blue, like the sky."}]}
    tok = tokenize_example(tokenizer, parse_one(row))
    assert [tokenizer.decode(s) for s in spans(tok)] == ["Hello!<|im_end|>", "Blue, like the sky.<|im_end|>"]
    assert "Be short." not in tokenizer.decode(sum(spans(tok), []))
    row["messages"][2]["weight"] = 0
    tok = tokenize_example(tokenizer, parse_one(row))
    assert [tokenizer.decode(s) for s in spans(tok)] == ["Blue, like the sky.<|im_end|>"]


def test_prompt_completion_and_example_weight(tokenizer) -> None:
    tok = tokenize_example(tokenizer, parse_one({"prompt": "Capital of Peru?", "completion": "Lima", "weight": 0.25}))
    assert [tokenizer.decode(s) for s in spans(tok)] == ["Lima<|im_end|>"]
    assert {w for w in tok.weights if w > 0} == {0.25}


def test_train_on_inputs_true_trains_everything(tokenizer) -> None:
    ex = parse_one({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]})
    tok = tokenize_example(tokenizer, ex, train_on_inputs=True)
    assert tok.n_trainable == len(tok.input_ids)
    assert tokenize_example(tokenizer, ex, train_on_inputs=False).weights == tokenize_example(tokenizer, ex).weights


def test_truncation_and_dropping_warn(tokenizer) -> None:
    rows = [{"messages": [{"role": "user", "content": "word " * 50}, {"role": "assistant", "content": "yes"}]},
            {"messages": [{"role": "user", "content": "short"}, {"role": "assistant", "content": "fine " * 30}]},
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "no", "weight": 0}]}]
    examples = parse_jsonl("".join(json.dumps(r) + "\n" for r in rows).encode())
    warnings: list[str] = []
    out = tokenize_dataset(tokenizer, examples, max_length=40, warn=lambda m, **counts: warnings.append(m))
    assert [t.line for t in out] == [2]
    assert all(len(t.input_ids) <= 40 for t in out)
    assert any("truncated" in w and "lines 1, 2" in w for w in warnings)
    assert any("no trainable tokens" in w and "lines 1, 3" in w for w in warnings)
    with pytest.raises(TrainingUserError, match="no example has any trainable tokens"):
        tokenize_dataset(tokenizer, examples[2:], max_length=40)


class _RewritingTemplate:
    """Wraps the real tokenizer with a template that rewrites earlier turns (counts messages up front)."""

    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer
        self.chat_template = ("{{ messages|length }} messages\n{% for m in messages %}{{ m['role'] }}: "
                              "{{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}")

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        return self._tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt,
                                             chat_template=self.chat_template)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tok, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._tok(*args, **kwargs)


def test_template_that_rewrites_turns_is_reported(tokenizer) -> None:
    ex = parse_one({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]})
    with pytest.raises(TemplateError, match="assistant-only loss cannot be masked"):
        tokenize_example(_RewritingTemplate(tokenizer), ex)
    assert tokenize_example(_RewritingTemplate(tokenizer), ex, train_on_inputs=True).n_trainable > 0


def test_count_tokens_equals_what_training_tokenizes(tokenizer) -> None:
    from tenfold.training.tokenize import DatasetStats, count_tokens, tokenize_preferences

    chats = [{"messages": [{"role": "system", "content": "Be short."}, {"role": "user", "content": "Hi"},
                           {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Color?"},
                           {"role": "assistant", "content": "Blue, like the sky on a clear day."}]},
             {"messages": [{"role": "user", "content": "Skip me"}, {"role": "assistant", "content": "ok"}],
              "weight": 0},  # skipped by training, so not counted
             {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "weight": 0}]},
             {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}],
              "weight": 0.5}]
    examples = parse_jsonl("".join(json.dumps(r) + "\n" for r in chats).encode())
    stats = DatasetStats()
    kept = tokenize_dataset(tokenizer, examples, max_length=100_000, stats=stats)
    count = count_tokens(tokenizer, examples)
    assert (count.n_tokens, count.n_counted) == (stats.n_tokens, stats.n_examples) == (stats.n_tokens, 2)
    assert count.max_example_tokens == max(len(t.input_ids) for t in kept)

    prompt_completion = parse_jsonl(b'{"prompt": "Capital of Peru?", "completion": "Lima"}\n')
    assert count_tokens(tokenizer, prompt_completion).n_tokens == len(tokenize_example(
        tokenizer, prompt_completion[0]).input_ids)

    pairs = [{"prompt": "Name a color", "chosen": "Blue.", "rejected": "I will not say."},
             {"prompt": [{"role": "system", "content": "Terse."}, {"role": "user", "content": "Hi"}],
              "chosen": "Hi.", "rejected": "Hello there, how are you doing today?"},
             {"prompt": "x", "chosen": "y", "rejected": "z", "weight": 0}]
    examples = parse_jsonl("".join(json.dumps(r) + "\n" for r in pairs).encode())
    stats = DatasetStats()
    kept_pairs = tokenize_preferences(tokenizer, examples, max_length=100_000, stats=stats)
    count = count_tokens(tokenizer, examples)
    assert (count.n_tokens, count.n_counted) == (stats.n_tokens, 2)
    assert count.max_example_tokens == max(len(p.rejected.input_ids) for p in kept_pairs)
