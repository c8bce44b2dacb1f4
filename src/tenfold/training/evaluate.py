"""Side-by-side evaluation of a base model and LoRA adapters (final adapters or checkpoints) on one file.

Owns: the evaluation rows and their two scores.
- ``loss``: mean next-token cross-entropy over the expected reply's tokens (the same masks as training:
  assistant turns only), for rows that carry a reply (``messages`` ending in an assistant turn, or
  ``prompt``/``completion``).
- ``exact_match``: greedy decoding of up to ``max_new_tokens`` from the prompt (the conversation before the
  last assistant turn), compared with the expected answer after stripping surrounding whitespace. The
  expected answer is the last assistant reply, the completion, or an explicit ``"expected"`` (alias
  ``"reference"``) field; rows given only a prompt and ``expected`` count for exact match, not loss.
One base model is loaded; every adapter is attached to it and switched with ``set_adapter`` (the base is
scored with adapters disabled), so N models cost one model load. Does not own: resolving model names to
folders (the api) or printing (the CLI).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tenfold.training.chat import parse_messages
from tenfold.training.errors import DatasetError
from tenfold.training.examples import Example, Message
from tenfold.training.formats import parse_line

MAX_EVAL_EXAMPLES = 1000


@dataclass(frozen=True)
class EvalRow:
    line: int
    prompt: tuple[Message, ...]
    expected: str | None
    example: Example | None  # for the loss: prompt + expected reply


def parse_eval_rows(rows: list[Any]) -> list[EvalRow]:
    """Evaluation rows from decoded JSON objects; raises ``DatasetError`` naming the first bad row."""
    if not rows:
        raise DatasetError(0, "no evaluation examples")
    if len(rows) > MAX_EVAL_EXAMPLES:
        raise DatasetError(0, f"{len(rows)} evaluation examples; the limit is {MAX_EVAL_EXAMPLES}")
    out = []
    for line, obj in enumerate(rows, start=1):
        if isinstance(obj, dict) and ("expected" in obj or "reference" in obj):
            expected = obj.get("expected", obj.get("reference"))
            if not isinstance(expected, str):
                expected = json.dumps(expected) if expected is not None else None
            if "messages" in obj:
                msgs = parse_messages(line, obj["messages"], need_assistant=False)
            elif isinstance(obj.get("prompt"), str):
                msgs = (Message("user", obj["prompt"]),)
            else:
                raise DatasetError(line, "an example with 'expected' needs 'messages' or a 'prompt' string")
            if msgs[-1].role == "assistant":
                msgs = msgs[:-1]
            example = Example(line=line, messages=(*msgs, Message("assistant", expected))) if expected else None
            out.append(EvalRow(line, msgs, expected, example))
            continue
        example = parse_line(line, obj)
        if example.is_preference:
            raise DatasetError(line, "preference pairs cannot be scored by exact match; give 'messages' or "
                                     "'prompt'/'completion'")
        if example.text is not None:
            raise DatasetError(line, "a 'text' row has no prompt and reply to compare; give 'messages', "
                                     "'prompt'/'completion' or a prompt with 'expected'")
        last = max(i for i, m in enumerate(example.messages) if m.role == "assistant")
        out.append(EvalRow(line, example.messages[:last], example.messages[last].content, example))
    return out


def evaluate_models(base_model_path: str | Path, adapters: list[tuple[str, str | None]], rows: list[EvalRow], *,
                    max_new_tokens: int = 32) -> list[dict[str, Any]]:
    """One result per ``(name, adapter folder or None for the base model)``, in the given order."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tenfold.training import batching
    from tenfold.training.tokenize import tokenize_example

    tokenizer = AutoTokenizer.from_pretrained(str(base_model_path))
    model: Any = AutoModelForCausalLM.from_pretrained(str(base_model_path), dtype=torch.float32)
    model.eval()
    names: dict[str, str] = {}
    for i, (name, folder) in enumerate(adapters):
        if folder is None:
            continue
        key = f"a{i}"
        if not isinstance(model, PeftModel):
            model = PeftModel.from_pretrained(model, folder, adapter_name=key)
        else:
            model.load_adapter(folder, adapter_name=key)
        names[name] = key
    model.eval()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    scored = [(r, tokenize_example(tokenizer, r.example)) for r in rows if r.example is not None]
    prompts = []
    for r in rows:
        text = tokenizer.apply_chat_template([{"role": m.role, "content": m.content} for m in r.prompt],
                                             tokenize=False, add_generation_prompt=True)
        prompts.append(tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"])

    def score() -> dict[str, Any]:
        total, n_tokens = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(scored), 8):
                stats = batching.compute_loss(model, batching.collate([t for _, t in scored[i:i + 8]], pad_id))
                total += float(stats.loss) * stats.n_trained
                n_tokens += stats.n_trained
            n_exact, n_expected = 0, 0
            for r, ids in zip(rows, prompts):
                if r.expected is None:
                    continue
                out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                     max_new_tokens=max_new_tokens, pad_token_id=pad_id)
                text = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
                n_expected += 1
                n_exact += int(text.strip() == r.expected.strip())
        return {"loss": total / n_tokens if n_tokens else None, "n_loss_tokens": n_tokens,
                "exact_match": n_exact / n_expected if n_expected else None, "n_exact": n_exact,
                "n_with_expected": n_expected}

    results = []
    for name, folder in adapters:
        if folder is None:
            if isinstance(model, PeftModel):
                with model.disable_adapter():
                    metrics = score()
            else:
                metrics = score()
        else:
            model.set_adapter(names[name])
            metrics = score()
        results.append({"model": name, "adapter": folder is not None, "n_examples": len(rows), **metrics})
    return results
