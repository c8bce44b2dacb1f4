"""Spec validation, packing, schedules, eval_every, n_checkpoints, continued fine-tuning and the DPO recipe
on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import load_file

from tenfold.training import batching
from tenfold.training.data import DatasetError, parse_jsonl
from tenfold.training.dpo import run_dpo
from tenfold.training.main import run_training
from tenfold.training.sft import run_sft
from tenfold.training.spec import TrainingSpec
from tenfold.training.tokenize import TokenizedExample
from tests.training.conftest import preference_rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def run(fn, spec) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    fn(spec, events.append)
    return events


BASE = dict(base_model="m", training_file="/t.jsonl", output_dir="/o")


@pytest.mark.parametrize(("values", "field"), [
    ({"n_epochs": 0}, "n_epochs"), ({"batch_size": 0}, "batch_size"), ({"batch_size": "huge"}, "batch_size"),
    ({"learning_rate": 0}, "learning_rate"), ({"lr_scheduler": "step"}, "lr_scheduler"),
    ({"warmup_ratio": 1.0}, "warmup_ratio"), ({"lora_r": 1000}, "lora_r"), ({"lora_dropout": 1}, "lora_dropout"),
    ({"max_seq_length": 8}, "max_seq_length"), ({"train_on_inputs": "maybe"}, "train_on_inputs"),
    ({"dpo_beta": 0}, "dpo_beta"), ({"method": "rlhf"}, "method"), ({"n_epochz": 3}, "n_epochz"),
    ({"checkpoint_every": 2, "n_checkpoints": 3}, "n_checkpoints"), ({"eval_every": 5}, "eval_every"),
    ({"suffix": "bad suffix!"}, "suffix"), ({"method": "dpo", "packing": True}, "packing"),
])
def test_spec_rejects_bad_values_naming_the_field(values: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        TrainingSpec(**BASE, **values)
    assert field in str(info.value)


def test_spec_defaults_aliases_and_resolution() -> None:
    spec = TrainingSpec(**BASE, max_length=64, method="supervised", batch_size="max", n_checkpoints=3)
    assert spec.method == "sft" and spec.max_seq_length == 64 and spec.lr_scheduler == "linear"
    assert spec.resolved_batch_size(10) == 10 and spec.resolved_batch_size(1000) == 64
    assert spec.resolved_checkpoint_every(10) == 4 and spec.target_modules == "all-linear"


def test_every_bad_line_is_reported_with_counts() -> None:
    good = {"prompt": "a", "completion": "b"}
    rows = [good, {"prompt": 1}, good, "[1]", {"prompt": "x", "completion": ""}] + [{"nope": 1}] * 30
    data = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()
    with pytest.raises(DatasetError) as info:
        parse_jsonl(data)
    err = info.value
    assert err.line == 2 and err.n_bad == 33 and err.n_lines == 35 and len(err.problems) == 20
    text = str(err)
    assert text.startswith("33 of 35 lines are invalid (the first 20 shown): line 2: ")
    assert "line 4: expected a JSON object" in text and "line 5: 'completion' is empty" in text


def test_preference_formats_parse() -> None:
    rows = [{"prompt": "Say hi", "chosen": "hi", "rejected": "no", "weight": 0.5},
            {"prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}],
             "chosen": "a", "rejected": "b"},
            {"input": {"messages": [{"role": "user", "content": "q"}]},
             "preferred_output": [{"role": "assistant", "content": "good"}],
             "non_preferred_output": [{"role": "assistant", "content": "bad"}]}]
    examples = [parse_jsonl((json.dumps(r) + "\n").encode())[0] for r in rows]
    assert [e.format for e in examples] == ["preference", "preference", "openai_preference"]
    assert examples[0].weight == 0.5 and examples[2].chosen == "good" and examples[2].rejected == "bad"
    with pytest.raises(DatasetError, match="identical"):
        parse_jsonl(b'{"prompt": "q", "chosen": "a", "rejected": "a"}\n')
    with pytest.raises(DatasetError, match="use one format"):
        parse_jsonl(b'{"prompt": "q", "chosen": "a", "rejected": "b"}\n{"prompt": "q", "completion": "a"}\n')


def test_packing_gives_the_same_loss_as_padding(make_spec, tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    examples = [TokenizedExample(i, torch.randint(5, 1000, (n,)).tolist(), [0.0] * 3 + [1.0] * (n - 3))
                for i, n in enumerate([9, 17, 5, 12, 30])]
    padded = batching.collate(examples, 0)
    packed = batching.collate_packed(examples, 0, 32)
    assert packed.input_ids.shape[0] < padded.input_ids.shape[0]  # fewer rows
    assert packed.input_ids.numel() < padded.input_ids.numel()  # less padding
    assert packed.n_tokens == padded.n_tokens == 73
    with torch.no_grad():
        a, b = batching.compute_loss(model, padded), batching.compute_loss(model, packed)
    assert a.n_trained == b.n_trained
    torch.testing.assert_close(a.loss, b.loss, rtol=1e-4, atol=1e-5)  # no attention across examples


def test_packed_run_trains_cosine_schedule_eval_every_and_n_checkpoints(make_spec, tmp_path: Path,
                                                                       rows_factory) -> None:
    valid = write_jsonl(tmp_path / "valid.jsonl", rows_factory(4))
    spec = make_spec(n_epochs=4, packing=True, lr_scheduler="cosine", warmup_ratio=0.25, checkpoint_every=0,
                     n_checkpoints=2, validation_file=str(valid), eval_every=4, learning_rate=1e-2)
    events = run(run_sft, spec)
    metrics = [e for e in events if e["type"] == "metrics"]
    lrs = [m["learning_rate"] for m in metrics]
    assert lrs[0] < lrs[4] and lrs[-1] < lrs[8]  # warmup, then cosine decay
    assert [m["step"] for m in metrics if "valid_loss" in m] == [4, 8, 12, 16]
    assert [e["step"] for e in events if e["type"] == "checkpoint"] == [8, 16]
    assert metrics[-1]["loss"] < metrics[0]["loss"]
    assert events[0]["checkpoint_every"] == 8 and events[-1]["valid_loss"] > 0


def test_continued_fine_tuning_starts_from_the_given_adapter(make_spec, tmp_path: Path) -> None:
    first = make_spec(output_dir=str(tmp_path / "first"), n_epochs=3, learning_rate=1e-2)
    done = run(run_sft, first)[-1]
    cont = make_spec(output_dir=str(tmp_path / "cont"), n_epochs=1, learning_rate=1e-9,
                     init_adapter=done["path"], checkpoint_every=0)
    cont_done = run(run_sft, cont)[-1]
    fresh = make_spec(output_dir=str(tmp_path / "fresh"), n_epochs=1, learning_rate=1e-9, checkpoint_every=0)
    fresh_done = run(run_sft, fresh)[-1]
    assert cont_done["train_loss"] < 0.8 * fresh_done["train_loss"]  # it kept what the first job learned
    a = load_file(str(Path(done["path"]) / "adapter_model.safetensors"))
    b = load_file(str(Path(cont_done["path"]) / "adapter_model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6)
    bad = make_spec(output_dir=str(tmp_path / "bad"), lora_r=4, init_adapter=done["path"])
    with pytest.raises(Exception, match="does not match this LoRA config"):
        run(run_sft, bad)


def test_dpo_margin_grows_and_runs_on_top_of_sft(make_spec, tmp_path: Path) -> None:
    sft_done = run(run_sft, make_spec(output_dir=str(tmp_path / "sft"), n_epochs=2, checkpoint_every=4))[-1]
    assert Path(tmp_path / "sft" / "step-4").is_dir()
    spec = make_spec(rows=preference_rows(), method="dpo", output_dir=str(tmp_path / "dpo"), n_epochs=6,
                     batch_size=4, learning_rate=1e-2, dpo_beta=0.5, checkpoint_every=6,
                     init_adapter=str(tmp_path / "sft" / "step-4"))
    events = run(run_training, spec)
    assert events[0]["method"] == "dpo" and events[0]["total_steps"] == 12
    metrics = [e for e in events if e["type"] == "metrics"]
    assert abs(metrics[0]["reward_margin"]) < 0.05  # the policy starts equal to its reference
    assert metrics[-1]["reward_margin"] > metrics[0]["reward_margin"] + 0.5
    assert metrics[-1]["loss"] < metrics[0]["loss"] and metrics[-1]["reward_accuracy"] == 1.0
    done = events[-1]
    assert done["train_reward_accuracy"] > 0.9 and done["trained_tokens"] > 0 and sft_done["path"] != done["path"]
    assert [e["step"] for e in events if e["type"] == "checkpoint"] == [6, 12]


def test_dpo_resume_matches_and_wrong_format_is_a_user_error(make_spec, tmp_path: Path) -> None:
    common = dict(rows=preference_rows(), method="dpo", n_epochs=2, batch_size=4, learning_rate=1e-2,
                  checkpoint_every=2)
    full = run(run_dpo, make_spec(output_dir=str(tmp_path / "a"), **common))[-1]
    resumed = run(run_dpo, make_spec(output_dir=str(tmp_path / "b"), resume_from=str(tmp_path / "a" / "step-2"),
                                     **common))[-1]
    assert resumed["train_loss"] == pytest.approx(full["train_loss"], abs=1e-6)
    from tenfold.training.errors import TrainingUserError

    with pytest.raises(TrainingUserError, match="method 'dpo' needs preference pairs"):
        run(run_dpo, make_spec(method="dpo", output_dir=str(tmp_path / "c")))
    with pytest.raises(TrainingUserError, match="train with method 'dpo'"):
        run(run_sft, make_spec(rows=preference_rows(), output_dir=str(tmp_path / "d")))
