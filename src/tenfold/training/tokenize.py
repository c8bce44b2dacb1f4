"""Tokenization for supervised fine-tuning with loss masks verified against the model's chat template.

Owns: turning parsed ``Example`` objects into token ids plus a per-token loss weight. For every assistant
turn ``i`` the trainable span is ``[len(render(messages[:i], add_generation_prompt=True)),
len(render(messages[:i+1])))`` in tokens, after checking that the longer rendering's ids really start with
the shorter one's (a template that rewrites earlier turns cannot be masked this way and is reported).
The span keeps the end-of-turn token (so the model learns to stop) and drops template whitespace after it.
The ``text`` format (TRL's standard language modeling) is tokenized as raw text, no chat template, with the
end-of-sequence token appended as TRL does, and every token trained. Also owns ``count_tokens``: the token
count of a whole file as training would tokenize it (one batched tokenizer call, no masks), which the upload
reports.
Does not own: file validation (``tenfold.training.data``) or batching (``tenfold.training.batching``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tenfold.models import tool_format
from tenfold.training.errors import TemplateError, TrainingUserError
from tenfold.training.examples import Example, Message

TrainOnInputs = Literal["auto", True, False]


@dataclass(frozen=True)
class TokenizedExample:
    line: int
    input_ids: list[int]
    weights: list[float]  # loss weight per position (0 = not trained); same length as input_ids

    @property
    def n_trainable(self) -> int:
        return sum(1 for w in self.weights if w > 0)


def render(tokenizer: Any, messages: Sequence[dict[str, Any]], *, add_generation_prompt: bool,
           tools: Sequence[dict] = ()) -> list[int]:
    """Token ids of a conversation exactly as serving renders its prompt (tools and tool turns included)."""
    text = tool_format.render_chat(tokenizer, list(messages), list(tools) or None,
                                   add_generation_prompt=add_generation_prompt)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def text_ids(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of raw texts (the ``text`` format): the tokenizer's own special tokens, then EOS appended
    unless the text already ends with it (TRL's SFT does the same)."""
    if not texts:
        return []
    out = tokenizer(list(texts), add_special_tokens=True, return_attention_mask=False)["input_ids"]
    eos = tokenizer.eos_token_id
    return [list(ids) + [eos] if eos is not None and (not ids or ids[-1] != eos) else list(ids) for ids in out]


def _end_of_turn_ids(tokenizer: Any) -> set[int]:
    ids = set()
    for token in ("<|im_end|>", "<|eot_id|>", "<|end|>", tokenizer.eos_token):
        if token and token in tokenizer.get_vocab():
            ids.add(tokenizer.convert_tokens_to_ids(token))
    return ids


def _require_template(tokenizer: Any) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise TemplateError("the base model's tokenizer has no chat template, so conversations cannot be "
                            "rendered; use an instruct/chat model")


def tokenize_example(tokenizer: Any, example: Example, *, train_on_inputs: TrainOnInputs = "auto",
                     end_of_turn: set[int] | None = None) -> TokenizedExample:
    """Token ids and loss weights for one example (not truncated)."""
    if example.text is not None:  # raw text: nothing is input, every token is trained
        ids = text_ids(tokenizer, [example.text])[0]
        return TokenizedExample(example.line, ids, [example.weight] * len(ids))
    _require_template(tokenizer)
    msgs = [m.as_dict() for m in example.messages]
    tools = example.tools
    ids = render(tokenizer, msgs, add_generation_prompt=False, tools=tools)
    if train_on_inputs is True:
        return TokenizedExample(example.line, ids, [example.weight] * len(ids))
    eot = _end_of_turn_ids(tokenizer) if end_of_turn is None else end_of_turn
    weights = [0.0] * len(ids)
    for i, msg in enumerate(example.messages):
        if msg.role != "assistant" or msg.weight == 0:
            continue
        if i == 0:
            raise TrainingUserError(f"line {example.line}: a conversation cannot start with an assistant message")
        prefix = render(tokenizer, msgs[:i], add_generation_prompt=True, tools=tools)
        full = render(tokenizer, msgs[: i + 1], add_generation_prompt=False, tools=tools)
        if full[: len(prefix)] != prefix:
            raise TemplateError(
                f"line {example.line}: the chat template renders assistant turn {i} so that its tokens do not "
                "start with the rendering of the conversation before it (add_generation_prompt=True); "
                "assistant-only loss cannot be masked reliably with this template. Use train_on_inputs=true "
                "or a model whose template renders turns append-only.")
        if ids[: len(full)] != full:
            raise TemplateError(
                f"line {example.line}: the chat template renders the conversation up to assistant turn {i} "
                "differently from the whole conversation (it rewrites earlier turns, e.g. drops reasoning); "
                "assistant-only loss cannot be masked reliably. Use train_on_inputs=true or another model.")
        start, end = len(prefix), len(full)
        last_eot = max((p for p in range(start, end) if full[p] in eot), default=None)
        if last_eot is not None:
            end = last_eot + 1  # keep the end-of-turn token, drop trailing template whitespace
        for p in range(start, end):
            weights[p] = example.weight
    return TokenizedExample(example.line, ids, weights)


@dataclass
class DatasetStats:
    """What tokenizing a file found; ``n_tokens`` counts the tokens one epoch trains on (after truncation;
    both sequences of a preference pair), which is what a job bills per epoch."""

    n_examples: int = 0
    n_tokens: int = 0
    truncated_lines: list[int] = field(default_factory=list)
    dropped_lines: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class PreferencePair:
    line: int
    chosen: TokenizedExample  # prompt + chosen reply, weights on the reply only
    rejected: TokenizedExample
    weight: float

    @property
    def n_tokens(self) -> int:
        return len(self.chosen.input_ids) + len(self.rejected.input_ids)


def _truncate(tok: TokenizedExample, max_length: int) -> tuple[TokenizedExample, bool]:
    if len(tok.input_ids) <= max_length:
        return tok, False
    return TokenizedExample(tok.line, tok.input_ids[:max_length], tok.weights[:max_length]), True


def _report(stats: DatasetStats, max_length: int, warn: Callable[..., None]) -> None:
    if stats.truncated_lines:
        warn(f"{len(stats.truncated_lines)} example(s) longer than max_seq_length={max_length} tokens were "
             f"truncated (lines {_lines(stats.truncated_lines)})", truncated=len(stats.truncated_lines))
    if stats.dropped_lines:
        warn(f"{len(stats.dropped_lines)} example(s) have no trainable tokens (weight 0, or the assistant reply "
             f"was cut off by max_seq_length) and were skipped (lines {_lines(stats.dropped_lines)})",
             skipped=len(stats.dropped_lines))


def tokenize_dataset(tokenizer: Any, examples: Sequence[Example], *, max_length: int,
                     train_on_inputs: TrainOnInputs = "auto",
                     warn: Callable[..., None] = lambda message, **counts: None,
                     stats: DatasetStats | None = None) -> list[TokenizedExample]:
    """Tokenize, truncate to ``max_length`` and drop examples with nothing to train on (with warnings;
    ``warn(message, truncated=n)`` / ``warn(message, skipped=n)``). Fills ``stats`` when given."""
    eot = _end_of_turn_ids(tokenizer)
    stats = stats if stats is not None else DatasetStats()
    out: list[TokenizedExample] = []
    for example in examples:
        if example.is_preference:
            raise TrainingUserError(f"line {example.line}: preference pairs (prompt/chosen/rejected) train with "
                                    "method 'dpo'; supervised fine-tuning needs 'messages', 'text' or "
                                    "'prompt'/'completion' examples")
        tok, cut = _truncate(tokenize_example(tokenizer, example, train_on_inputs=train_on_inputs,
                                              end_of_turn=eot), max_length)
        if cut:
            stats.truncated_lines.append(example.line)
        if tok.n_trainable == 0 or example.weight == 0:
            stats.dropped_lines.append(example.line)
            continue
        out.append(tok)
        stats.n_tokens += len(tok.input_ids)
    stats.n_examples = len(out)
    _report(stats, max_length, warn)
    if not out:
        raise TrainingUserError("no example has any trainable tokens; check weights and max_seq_length")
    return out


def tokenize_preferences(tokenizer: Any, examples: Sequence[Example], *, max_length: int,
                         warn: Callable[..., None] = lambda message, **counts: None,
                         stats: DatasetStats | None = None) -> list[PreferencePair]:
    """Preference pairs as two masked sequences each (loss/log-probs on the reply only), truncated."""
    eot = _end_of_turn_ids(tokenizer)
    stats = stats if stats is not None else DatasetStats()
    out: list[PreferencePair] = []
    for example in examples:
        if not example.is_preference:
            raise TrainingUserError(f"line {example.line}: method 'dpo' needs preference pairs "
                                    "('prompt', 'chosen', 'rejected'); this file holds "
                                    f"{example.format!r} examples, which train with method 'sft'")
        pair, cut = [], False
        for reply in (example.chosen, example.rejected):
            full = Example(line=example.line, messages=(*example.messages, Message("assistant", reply or "")))
            tok, was_cut = _truncate(tokenize_example(tokenizer, full, train_on_inputs=False, end_of_turn=eot),
                                     max_length)
            pair.append(tok)
            cut = cut or was_cut
        if cut:
            stats.truncated_lines.append(example.line)
        if example.weight == 0 or not all(t.n_trainable for t in pair):
            stats.dropped_lines.append(example.line)
            continue
        item = PreferencePair(example.line, pair[0], pair[1], example.weight)
        out.append(item)
        stats.n_tokens += item.n_tokens
    stats.n_examples = len(out)
    _report(stats, max_length, warn)
    if not out:
        raise TrainingUserError("no preference pair has a trainable reply; check weights and max_seq_length")
    return out


@dataclass(frozen=True)
class TokenCount:
    """Tokens of a file as one epoch of training would see them before truncation to max_seq_length:
    the rendered chat template of every example it trains on (both sequences of a preference pair)."""

    n_tokens: int
    max_example_tokens: int  # the longest sequence (for a preference pair: the longer of its two)
    n_counted: int  # examples counted; weight 0 (or every assistant turn weight 0) is skipped as training does


def _trains(example: Example) -> bool:
    if example.weight == 0:
        return False
    if example.is_preference or example.text is not None:
        return True
    return any(m.role == "assistant" and m.weight for m in example.messages)


def count_tokens(tokenizer: Any, examples: Sequence[Example]) -> TokenCount:
    """Count tokens exactly as ``tokenize_dataset`` / ``tokenize_preferences`` produce ids (same rendering,
    same tokenizer call), with one batched template rendering and one batched tokenizer call."""
    conversations: list[list[dict[str, str]]] = []
    counted = [e for e in examples if _trains(e)]
    lengths: list[int] = []
    for example in counted:
        if example.text is not None:
            continue
        msgs = [m.as_dict() for m in example.messages]
        if example.tools or any(m.tool_calls or m.role == "tool" for m in example.messages):
            _require_template(tokenizer)  # rendered one by one: its tools go to the template with it
            lengths.append(len(render(tokenizer, msgs, add_generation_prompt=False, tools=example.tools)))
            continue
        if example.is_preference:
            conversations += [msgs + [{"role": "assistant", "content": reply or ""}]
                              for reply in (example.chosen, example.rejected)]
        else:
            conversations.append(msgs)
    lengths += [len(ids) for ids in text_ids(tokenizer, [e.text for e in counted if e.text is not None])]
    if conversations:
        _require_template(tokenizer)
        texts = tokenizer.apply_chat_template(conversations, tokenize=False, add_generation_prompt=False)
        lengths += [len(ids) for ids in tokenizer(texts, add_special_tokens=False,
                                                  return_attention_mask=False)["input_ids"]]
    if not lengths:
        return TokenCount(0, 0, 0)
    return TokenCount(n_tokens=sum(lengths), max_example_tokens=max(lengths), n_counted=len(counted))


def _lines(lines: list[int], limit: int = 10) -> str:
    shown = ", ".join(str(n) for n in lines[:limit])
    return shown + (f", ... (+{len(lines) - limit})" if len(lines) > limit else "")
