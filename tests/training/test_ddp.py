"""Both recipes on two CPU processes (torchrun + accelerate, gloo): both ranks end with identical LoRA
weights, only one set of checkpoints is written, the result matches what the data says, and the billed
token count equals a single-process run's."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tenfold.training import checkpoints
from tests.training.conftest import preference_rows


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _torchrun_two_processes(spec, tmp_path: Path) -> list[dict]:
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(spec.model_dump_json())
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
         "--master_port", str(_free_port()), "-m", "tenfold.training.ddp", "--spec", str(spec_path)],
        capture_output=True, text=True, env=env, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("dtype", ["float32", "auto"])
def test_two_cpu_processes_agree_and_write_one_checkpoint(make_spec, tmp_path: Path, dtype: str) -> None:
    """"auto": rank 0 measures the format and every rank trains in it (identical weights either way)."""
    spec = make_spec(n_epochs=2, batch_size=4, checkpoint_every=4, learning_rate=1e-2, dtype=dtype)
    events = _torchrun_two_processes(spec, tmp_path)
    started = next(e for e in events if e["type"] == "started")
    assert started["base_dtype"] in (("float32",) if dtype == "float32" else ("float32", "bfloat16"))
    ranks = {e["rank"]: e for e in events if e["type"] == "rank_done"}
    assert sorted(ranks) == [0, 1] and ranks[0]["world_size"] == 2 and ranks[0]["backend"] == "gloo"
    assert ranks[0]["checksum"] == ranks[1]["checksum"]  # identical weights on both ranks
    assert {e["rank"] for e in events if e["type"] != "rank_done"} == {0}  # only the main rank reports
    assert [e["step"] for e in events if e["type"] == "checkpoint"] == [4, 8]
    assert [c.step for c in checkpoints.list_checkpoints(spec.output_dir)] == [4, 8]
    assert not [p for p in Path(spec.output_dir).iterdir() if p.name.startswith(".")]
    metrics = [e for e in events if e["type"] == "metrics"]
    assert metrics[-1]["loss"] < metrics[0]["loss"]
    single = []  # the token counter (what is billed) covers both ranks' shares: same as one process
    from tenfold.training.sft import run_sft

    run_sft(spec.model_copy(update={"output_dir": str(tmp_path / "single"), "dtype": started["base_dtype"]}),
            single.append)
    done = next(e for e in events if e["type"] == "done")
    assert done["trained_tokens"] == single[-1]["trained_tokens"]


@pytest.mark.timeout(300)
def test_dpo_on_two_cpu_processes(make_spec, tmp_path: Path) -> None:
    spec = make_spec(rows=preference_rows(), method="dpo", n_epochs=4, batch_size=4, learning_rate=1e-2,
                     dpo_beta=0.5, checkpoint_every=4)
    events = _torchrun_two_processes(spec, tmp_path)
    ranks = {e["rank"]: e for e in events if e["type"] == "rank_done"}
    assert sorted(ranks) == [0, 1] and ranks[0]["checksum"] == ranks[1]["checksum"]
    assert {e["rank"] for e in events if e["type"] != "rank_done"} == {0}
    assert [c.step for c in checkpoints.list_checkpoints(spec.output_dir)] == [4, 8]
    metrics = [e for e in events if e["type"] == "metrics"]
    assert abs(metrics[0]["reward_margin"]) < 0.05  # the policy starts equal to its reference
    assert metrics[-1]["reward_margin"] > metrics[0]["reward_margin"] + 0.5
    from tenfold.training.dpo import run_dpo

    single: list[dict] = []
    run_dpo(spec.model_copy(update={"output_dir": str(tmp_path / "single")}), single.append)
    assert next(e for e in events if e["type"] == "done")["trained_tokens"] == single[-1]["trained_tokens"]
