"""The SFT recipe in-process on the tiny model: events, checkpoints, resume, cancellation, user errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from tenfold.training import checkpoints
from tenfold.training.errors import DatasetError, TrainingCancelled, TrainingUserError
from tenfold.training.sft import run_sft


def run(spec, should_stop=lambda: False) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    run_sft(spec, events.append, should_stop)
    return events


def test_events_checkpoints_and_decreasing_loss(make_spec, tiny_model_dir: Path) -> None:
    spec = make_spec(n_epochs=6, learning_rate=1e-2, checkpoint_every=4, logging_steps=2)
    events = run(spec)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "started" and kinds[-1] == "done"
    started = events[0]
    assert started["total_steps"] == 4 * 6 and started["n_examples"] == 16 and started["epochs"] == 6
    assert 0 < started["trainable_params"] < started["total_params"]
    metrics = [e for e in events if e["type"] == "metrics"]
    assert [m["step"] for m in metrics] == list(range(2, 25, 2))
    for m in metrics:
        assert m["total_steps"] == 24 and m["tokens_per_second"] > 0 and m["learning_rate"] > 0
        assert set(m) >= {"epoch", "loss", "tokens", "elapsed_s", "eta_s"}
    assert metrics[-1]["loss"] < 0.5 * metrics[0]["loss"]
    assert metrics[0]["learning_rate"] > metrics[-1]["learning_rate"]  # linear decay
    ckpts = [e for e in events if e["type"] == "checkpoint"]
    assert [c["step"] for c in ckpts] == [4, 8, 12, 16, 20, 24]
    assert ckpts[-1]["metrics"]["train_loss"] < ckpts[0]["metrics"]["train_loss"]
    assert 0 <= ckpts[-1]["metrics"]["train_mean_token_accuracy"] <= 1
    done = events[-1]
    assert done["path"] == str(Path(spec.output_dir, "final").resolve()) and done["steps"] == 24
    assert done["trained_tokens"] == metrics[-1]["tokens"] > 0
    listed = checkpoints.list_checkpoints(spec.output_dir)
    assert [c.step for c in listed] == [4, 8, 12, 16, 20, 24] and all(c.has_resume_state for c in listed)
    assert not [p for p in Path(spec.output_dir).iterdir() if p.name.startswith(".")]  # no temp folders


def test_checkpoint_is_a_loadable_peft_folder(make_spec, tiny_model_dir: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    spec = make_spec(n_epochs=1, checkpoint_every=2)
    events = run(spec)
    folder = Path(next(e for e in events if e["type"] == "checkpoint")["path"])
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "tiny-random-llama" and config["r"] == 16
    assert sorted(p.name for p in folder.iterdir()) == ["adapter_config.json", "adapter_model.safetensors", "resume"]
    assert not (Path(events[-1]["path"]) / "resume").exists()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(folder))
    saved = load_file(str(folder / "adapter_model.safetensors"))
    assert saved and any(float(t.abs().sum()) > 0 for k, t in saved.items() if "lora_B" in k)
    ids = torch.tensor([[1, 2, 3]])
    assert model(input_ids=ids).logits.shape == (1, 3, 49152)
    digest = checkpoints.adapter_digest(folder)
    assert digest.startswith("sha256:") and digest == checkpoints.adapter_digest(folder)
    assert digest != checkpoints.adapter_digest(events[-1]["path"])  # final differs from step 2


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_resume_gives_the_same_final_adapter(make_spec, tmp_path: Path, dtype: str) -> None:
    """Also with the base in bfloat16 (TENFOLD_TRAIN_DTYPE where it wins): adapter weights, gradients and
    optimizer state stay float32, so resume is as exact as in float32."""
    common = dict(n_epochs=3, checkpoint_every=2, lora_dropout=0.1, warmup_ratio=0.2, dtype=dtype)
    full = make_spec(output_dir=str(tmp_path / "full"), **common)
    full_events = run(full)
    resumed = make_spec(output_dir=str(tmp_path / "resumed"), resume_from=str(tmp_path / "full" / "step-6"), **common)
    resumed_events = run(resumed)
    assert resumed_events[0]["start_step"] == 6
    assert [e["step"] for e in resumed_events if e["type"] == "metrics"] == list(range(7, 13))
    a = load_file(str(Path(full_events[-1]["path"]) / "adapter_model.safetensors"))
    b = load_file(str(Path(resumed_events[-1]["path"]) / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)
    assert resumed_events[-1]["trained_tokens"] == full_events[-1]["trained_tokens"]
    assert resumed_events[-1]["train_loss"] == pytest.approx(full_events[-1]["train_loss"], abs=1e-5)
    assert full_events[0]["base_dtype"] == dtype and all(t.dtype == torch.float32 for t in a.values())
    if dtype == "bfloat16":  # the format changed the run: not the float32 adapter
        ref = run(make_spec(output_dir=str(tmp_path / "f32"), **{**common, "dtype": "float32"}))
        assert ref[-1]["train_loss"] != full_events[-1]["train_loss"]
        assert ref[-1]["train_loss"] == pytest.approx(full_events[-1]["train_loss"], rel=0.05)  # within its precision


def test_resume_from_a_mismatched_run_is_a_user_error(make_spec, tmp_path: Path) -> None:
    first = make_spec(output_dir=str(tmp_path / "a"), n_epochs=1)
    run(first)
    other = make_spec(output_dir=str(tmp_path / "b"), n_epochs=2, resume_from=str(tmp_path / "a" / "step-2"))
    with pytest.raises(TrainingUserError, match="cannot resume"):
        run(other)
    missing = make_spec(output_dir=str(tmp_path / "c"), resume_from=str(tmp_path / "a" / "final"))
    with pytest.raises(TrainingUserError, match="no resume state"):
        run(missing)


def test_should_stop_cancels_between_steps(make_spec) -> None:
    spec = make_spec(n_epochs=5, checkpoint_every=3)
    events: list[dict[str, Any]] = []
    with pytest.raises(TrainingCancelled) as info:
        run_sft(spec, events.append, lambda: sum(e["type"] == "checkpoint" for e in events) >= 1)
    assert info.value.step == 3
    assert [c.step for c in checkpoints.list_checkpoints(spec.output_dir)] == [3]
    assert not (Path(spec.output_dir) / "final").exists()


def test_bad_data_and_bad_hyperparameters_are_user_errors(make_spec) -> None:
    bad = [{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}, {"prompt": 3}]
    with pytest.raises(DatasetError, match="line 2"):
        run(make_spec(rows=bad))
    with pytest.raises(TrainingUserError, match="target_modules"):
        run(make_spec(target_modules=["no_such_module"]))


def test_validation_file_adds_valid_metrics(make_spec, tmp_path: Path, rows_factory) -> None:
    valid = tmp_path / "valid.jsonl"
    valid.write_text("".join(json.dumps(r) + "\n" for r in rows_factory(4)))
    events = run(make_spec(validation_file=str(valid), n_epochs=1))
    ckpt = next(e for e in events if e["type"] == "checkpoint")
    assert ckpt["metrics"]["valid_loss"] > 0 and 0 <= ckpt["metrics"]["valid_mean_token_accuracy"] <= 1
    assert "valid_loss" in events[-1]
