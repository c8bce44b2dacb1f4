"""Micro-batching a step by a token budget (gradient accumulation inside the step) changes the memory, not
the math: the same loss, gradients and trained adapter as one pass, padded and packed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from tenfold.training import batching
from tenfold.training.sft import run_sft
from tenfold.training.tokenize import TokenizedExample


def _examples(lengths: list[int]) -> list[TokenizedExample]:
    torch.manual_seed(0)
    return [TokenizedExample(i, torch.randint(5, 1000, (n,)).tolist(), [0.0] * 3 + [1.0 if i % 2 else 0.5] * (n - 3))
            for i, n in enumerate(lengths)]


def test_groups_respect_the_budget() -> None:
    examples = _examples([9, 17, 5, 12, 30, 40])
    assert batching.micro_batches(examples, max_tokens=0, packed=False) == [examples]  # one pass
    packed = batching.micro_batches(examples, max_tokens=32, packed=True)
    assert [[len(e.input_ids) for e in g] for g in packed] == [[40], [30], [17, 12], [9, 5]]
    padded = batching.micro_batches(examples, max_tokens=32, packed=False)
    assert [[len(e.input_ids) for e in g] for g in padded] == [[40], [30], [17], [12, 9], [5]]
    for groups in (packed, padded):
        assert sorted(e.line for g in groups for e in g) == list(range(6))  # every example once


def _lora_model(tiny_model_dir: Path) -> Any:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    model.config.use_cache = False  # as the recipe runs it: with a KV cache transformers ignores packed positions
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM",
                                             init_lora_weights=False))  # non-zero B: every LoRA weight gets a grad
    return model


def _grads(model: Any, examples: list[TokenizedExample], *, packed: bool, max_tokens: int) -> tuple[float, dict]:
    model.zero_grad(set_to_none=True)
    n_trained = sum(batching.n_targets(e) for e in examples)
    loss = 0.0
    for group in batching.micro_batches(examples, max_tokens=max_tokens, packed=packed):
        batch = batching.collate_packed(group, 0, 64) if packed else batching.collate(group, 0)
        stats = batching.compute_loss(model, batch, normalizer=n_trained)
        stats.loss.backward()
        loss += float(stats.loss.detach())
    return loss, {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("packed", [False, True])
def test_accumulated_micro_batches_give_the_one_pass_loss_and_gradients(tiny_model_dir: Path, packed: bool) -> None:
    model = _lora_model(tiny_model_dir)
    examples = _examples([9, 17, 5, 12, 30, 40, 22, 8])
    loss, grads = _grads(model, examples, packed=packed, max_tokens=0)
    split_loss, split_grads = _grads(model, examples, packed=packed, max_tokens=32)
    assert len(batching.micro_batches(examples, max_tokens=32, packed=packed)) >= 4
    assert split_loss == pytest.approx(loss, rel=1e-6)
    for name, grad in grads.items():  # float32 sums in another order: equal to ~1e-6 of the tensor's scale
        assert (split_grads[name] - grad).abs().max() <= 1e-5 * grad.abs().max(), name


def test_a_micro_batched_run_trains_the_same_adapter(make_spec, tmp_path: Path) -> None:
    def train(budget: int, packing: bool) -> tuple[list[float], dict]:
        events: list[dict] = []
        spec = make_spec(output_dir=str(tmp_path / f"{budget}-{packing}"), micro_batch_tokens=budget,
                         packing=packing, checkpoint_every=0, learning_rate=1e-2)
        run_sft(spec, events.append)
        losses = [e["loss"] for e in events if e["type"] == "metrics"]
        return losses, load_file(str(Path(events[-1]["path"]) / "adapter_model.safetensors"))

    for packing in (False, True):
        losses, weights = train(0, packing)
        split_losses, split_weights = train(40, packing)  # about one example per pass
        assert split_losses == pytest.approx(losses, rel=1e-5)
        for key in weights:
            torch.testing.assert_close(split_weights[key], weights[key], rtol=1e-4, atol=1e-5)  # Adam: ~1e-6 noise


def test_spec_budget_is_optional_and_non_negative() -> None:
    from pydantic import ValidationError

    from tenfold.training.spec import TrainingSpec

    base = dict(base_model="m", training_file="/t.jsonl", output_dir="/o")
    assert TrainingSpec(**base).micro_batch_tokens is None
    assert batching.default_micro_batch_tokens(torch.device("cpu")) == batching.CPU_MICRO_BATCH_TOKENS
    with pytest.raises(ValidationError, match="micro_batch_tokens"):
        TrainingSpec(**base, micro_batch_tokens=-1)
    assert json.loads(TrainingSpec(**base, micro_batch_tokens=64).model_dump_json())["micro_batch_tokens"] == 64
