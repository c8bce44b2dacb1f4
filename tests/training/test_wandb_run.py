"""The trainer's Weights & Biases run, offline (``WANDB_MODE=offline``): the run folder under the job's output
dir holds the loss series (read back from the ``.wandb`` file wandb writes), the config is the resolved
hyperparameters, and the API key, given in the environment only, is written nowhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.training.conftest import write_jsonl
from tests.training.wandb_reader import read_offline_run

SECRET = "wandb-test-key-0123456789abcdef0123456789abcdef"


def _run(spec, tmp_path: Path, **env: str) -> tuple[int, list[dict[str, Any]], str]:
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(spec.model_dump_json())
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "offline",
                "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"), "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache"),
                "WANDB_DATA_DIR": str(tmp_path / "wandb-data"), **env}
    full_env = {k: v for k, v in full_env.items() if v != "" and k != "WANDB_DIR"}  # "": unset
    proc = subprocess.run([sys.executable, "-m", "tenfold.training.main", "--spec", str(spec_path)],
                          capture_output=True, text=True, env=full_env, timeout=240)
    return proc.returncode, [json.loads(line) for line in proc.stdout.splitlines()], proc.stderr


def _files_containing(root: Path, needle: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


@pytest.mark.timeout(300)
def test_offline_run_holds_the_loss_series_and_never_the_key(make_spec, tmp_path: Path, rows_factory) -> None:
    from tenfold.types.fine_tuning import WandbSettings

    valid = write_jsonl(tmp_path / "valid.jsonl", rows_factory(3))
    out = tmp_path / "ftjob-0123abcd"
    spec = make_spec(output_dir=str(out), validation_file=str(valid), n_epochs=2, batch_size=4, checkpoint_every=4,
                     wandb=WandbSettings(project="tenfold-tests", name="my run", tags=["t1"]))
    code, events, stderr = _run(spec, tmp_path, WANDB_API_KEY=SECRET)
    assert code == 0, stderr
    info = next(e for e in events if e["type"] == "info")
    assert info["wandb_mode"] == "offline" and info["wandb_api_key_set"] is True
    assert info["wandb_run_id"] == "ftjob-0123abcd" and "'my run'" in info["message"]
    folder = Path(info["wandb_dir"])
    assert folder.parent == out / "wandb" and folder.name.startswith("offline-run-")

    run = read_offline_run(folder)
    metrics = [e for e in events if e["type"] == "metrics"]
    assert (run.project, run.name, run.run_id) == ("tenfold-tests", "my run", "ftjob-0123abcd")
    assert set(run.tags) == {"t1", "tenfold/finetune", "tenfold/tiny-random-llama", "tenfold/ftjob-0123abcd"}
    assert run.series("train/loss") == {m["step"]: pytest.approx(m["loss"]) for m in metrics}
    assert run.series("train/learning_rate") == {m["step"]: pytest.approx(m["learning_rate"]) for m in metrics}
    assert set(run.series("train/tokens_per_second")) == {m["step"] for m in metrics}
    valid_steps = [m["step"] for m in metrics if "valid_loss" in m]
    assert valid_steps == list(range(1, 9)) and set(run.series("valid/loss")) == set(valid_steps)  # auto: 8 steps
    config = run.config
    assert config["learning_rate"] == spec.learning_rate and config["lora_r"] == spec.lora_r
    assert config["method"] == "sft" and config["batch_size"] == 4 and config["total_steps"] == 8
    assert config["eval_every"] == 1 and config["n_evals"] == 8
    done = events[-1]
    assert run.summary["evaluated_tokens"] == done["evaluated_tokens"] > 0 and run.exit_code == 0
    assert not _files_containing(tmp_path, SECRET)  # spec, run folder, wandb's config/cache/data dirs
    assert SECRET not in stderr and SECRET not in json.dumps(events)


@pytest.mark.timeout(300)
def test_a_run_that_cannot_start_is_a_user_error_without_the_key(make_spec, tmp_path: Path) -> None:
    from tenfold.types.fine_tuning import WandbSettings

    spec = make_spec(output_dir=str(tmp_path / "ftjob-x"), wandb=WandbSettings(project="p"))
    code, events, stderr = _run(spec, tmp_path, WANDB_MODE="online", WANDB_API_KEY="", HOME=str(tmp_path),
                                WANDB_BASE_URL="http://127.0.0.1:9")  # no key anywhere, no server
    assert code == 1, stderr
    (event,) = events
    assert event["type"] == "error" and event["user_error"] is True
    assert event["message"].startswith("W&B: could not start the run in project 'p'")


def test_secret_in_an_error_message_is_masked() -> None:
    import io

    from tenfold.training.main import _EventWriter

    stream = io.StringIO()
    _EventWriter(stream, secrets=(SECRET, ""))({"type": "error", "message": f"bad key {SECRET}", "user_error": True})
    assert json.loads(stream.getvalue()) == {"type": "error", "message": "bad key ***", "user_error": True}
