"""Fine-tuning on several processes started by the worker (``hyperparameters.n_procs``: torchrun of
``tenfold.training.ddp``, gloo on CPU) through a real server: the job succeeds with the same checkpoints and
billed tokens as on one process, a cancel stops every process, and a rank that dies fails the job, which then
resumes from its last checkpoint like a single-process one."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.api.helpers import TRAIN_ROWS, jsonl, upload, wait_job
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(600)
HP = {"n_epochs": 3, "batch_size": 4, "learning_rate": 2e-3, "lora_r": 2, "checkpoint_every": 3}


def ranks(job_id: str) -> list[int]:
    """Pids of the job's training ranks (``tenfold.training.ddp`` processes whose spec is the job's)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "tenfold.training.ddp" in cmd and job_id in cmd and "torch.distributed.run" not in cmd:
            pids.append(int(entry.name))
    return pids




def events(c, job_id: str) -> list[str]:
    return [e["message"] for e in c.get(f"/fine_tuning/jobs/{job_id}/events",
                                         params={"order": "asc", "limit": 100}).json()["data"]]


def checkpoints(c, job_id: str) -> list[int]:
    return sorted(x["step_number"] for x in c.get(f"/fine_tuning/jobs/{job_id}/checkpoints").json()["data"])


def test_a_job_on_two_processes_matches_one_process(server, tmp_path):
    from typer.testing import CliRunner

    from tenfold.cli.main import app

    data = tmp_path / "train.jsonl"
    data.write_bytes(jsonl(TRAIN_ROWS))
    env = {"TENFOLD_BASE_URL": server.base_url, "TENFOLD_API_KEY": server.api_key,
           "TENFOLD_CONFIG_DIR": str(tmp_path / "config"), "COLUMNS": "200"}
    with server.client() as c:
        fid = upload(c, jsonl(TRAIN_ROWS)).json()["id"]
        jobs = {}
        r = c.post("/fine_tuning/jobs", json={"model": "tiny-random-llama", "training_file": fid, "seed": 4,
                                              "hyperparameters": {**HP, "n_procs": 1}})
        assert r.status_code == 200 and r.json()["hyperparameters"]["n_procs"] == 1, r.text
        jobs[1] = wait_job(c, r.json()["id"])
        out = CliRunner().invoke(app, ["train", str(data), "--model", "tiny-random-llama", "--seed", "4",
                                       "--epochs", "3", "--batch-size", "4", "--learning-rate", "2e-3", "--lora-r", "2",
                                       "--checkpoint-every", "3", "--n-procs", "2", "--no-follow"], env=env)
        assert out.exit_code == 0, out.output
        job_id = next(w for w in out.output.split() if w.startswith("ftjob-"))
        assert c.get(f"/fine_tuning/jobs/{job_id}").json()["hyperparameters"]["n_procs"] == 2
        jobs[2] = wait_job(c, job_id)
        for n, job in jobs.items():
            assert job["status"] == "succeeded", job
        one, two = jobs[1], jobs[2]
        assert "Training started on 2 processes." in events(c, two["id"])
        assert two["trained_tokens"] == one["trained_tokens"] > 0  # billed the same: every rank's share counted
        assert checkpoints(c, two["id"]) == checkpoints(c, one["id"]) == [3, 6, 9]
        assert two["progress"]["loss"] == pytest.approx(one["progress"]["loss"], rel=0.05)
        rows = [u for u in c.get("/usage", params={"limit": 100}).json()["data"] if u["request_id"] == two["id"]]
        assert len(rows) == 1 and rows[0]["prompt_tokens"] == two["trained_tokens"], rows  # billed once
        assert c.post("/adapters", json={"model": two["id"]}).status_code == 200  # deployable like any job
        bad = c.post("/fine_tuning/jobs", json={"model": "tiny-random-llama", "training_file": fid,
                                                "hyperparameters": {"n_procs": 65}})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "hyperparameters.n_procs"


def test_cancel_stops_every_process_and_a_dead_rank_resumes_from_its_checkpoint(server):
    with server.client() as c:
        fid = upload(c, jsonl(TRAIN_ROWS * 4)).json()["id"]
        body = {"model": "tiny-random-llama", "training_file": fid, "seed": 5,
                "hyperparameters": {**HP, "n_epochs": 8, "batch_size": 2, "n_procs": 2}}
        cancelled = c.post("/fine_tuning/jobs", json=body).json()["id"]
        wait_for("two ranks", lambda: len(ranks(cancelled)) == 2)
        wait_for("a checkpoint", lambda: checkpoints(c, cancelled), timeout=180)
        assert c.post(f"/fine_tuning/jobs/{cancelled}/cancel").json()["status"] == "cancelled"
        wait_for("every rank to exit", lambda: not ranks(cancelled), timeout=60)

        job_id = c.post("/fine_tuning/jobs", json=body).json()["id"]
        wait_for("a checkpoint", lambda: checkpoints(c, job_id), timeout=180)
        os.kill(max(ranks(job_id)), signal.SIGKILL)  # one rank dies; torchrun stops the other
        failed = wait_job(c, job_id)
        assert failed["status"] == "failed", failed  # the survivor reports the broken collective
        wait_for("every rank to exit", lambda: not ranks(job_id), timeout=60)
        kept = checkpoints(c, job_id)
        assert c.post(f"/fine_tuning/jobs/{job_id}/resume").status_code == 200
        done = wait_job(c, job_id)
        assert done["status"] == "succeeded", done
        resumed = [m for m in events(c, job_id) if m.startswith("Resuming from checkpoint step")]
        assert resumed and int(resumed[-1].split("step ")[1].split()[0]) >= kept[-1]
