"""The status flow after creation, with the api and the worker as separate processes on one database: a new
job shows ``validating_files`` until a worker validates its files, then ``queued`` → ``running`` →
``succeeded``; a job whose file fails deep validation ends ``failed`` with the reason; a job cancelled while
validating stays cancelled; resuming a job that never trained validates its files again."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.api.helpers import TRAIN_ROWS, jsonl, upload, wait_job
from tests.conftest import TINY, server_env, start_server, stop_server

FLOW = ["validating_files", "queued", "running", "succeeded"]


def _start_worker(home, model_cache) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tenfold.cli.main", "serve", "--role", "worker"],
                            env=server_env(home, model_cache), stdout=open(home / "worker.log", "wb"),
                            stderr=subprocess.STDOUT)


def _messages(c, job_id: str) -> list[str]:
    events = c.get(f"/fine_tuning/jobs/{job_id}/events", params={"order": "asc", "limit": 100}).json()["data"]
    return [e["message"] for e in events]


@pytest.mark.timeout(300)
def test_validating_files_then_queued_or_failed(tmp_path, model_cache):
    home = tmp_path / "home"
    api = start_server(home, model_cache, role="api")  # no worker: nothing validates or trains yet
    worker = None
    try:
        with api.client() as c:
            fid = upload(c, jsonl(TRAIN_ROWS)).json()["id"]
            hp = {"n_epochs": 1, "batch_size": 4, "lora_r": 2}
            body = {"model": TINY, "training_file": fid, "seed": 1, "hyperparameters": hp}
            good = c.post("/fine_tuning/jobs", json=body).json()
            # max_seq_length 16 cuts every reply off after the chat template's system prompt: only
            # tokenizing the file finds that out, so creation succeeds and validation fails.
            bad = c.post("/fine_tuning/jobs", json={**body, "hyperparameters": {**hp, "max_seq_length": 16}}).json()
            dropped = c.post("/fine_tuning/jobs", json=body).json()
            assert [j["status"] for j in (good, bad, dropped)] == ["validating_files"] * 3
            time.sleep(1.0)
            assert c.get(f"/fine_tuning/jobs/{good['id']}").json()["status"] == "validating_files"
            assert _messages(c, good["id"]) == [f"Created sft fine-tuning job {good['id']} on {TINY}; "
                                                "validating files."]
            assert c.post(f"/fine_tuning/jobs/{dropped['id']}/cancel").json()["status"] == "cancelled"

            worker = _start_worker(home, model_cache)
            seen = ["validating_files"]
            deadline = time.time() + 240
            while seen[-1] not in ("succeeded", "failed", "cancelled"):
                assert time.time() < deadline, seen
                status = c.get(f"/fine_tuning/jobs/{good['id']}").json()["status"]
                if status != seen[-1]:
                    seen.append(status)
                time.sleep(0.05)
            assert seen[-1] == "succeeded" and "running" in seen and [s for s in FLOW if s in seen] == seen, seen
            messages = _messages(c, good["id"])
            order = [next(i for i, m in enumerate(messages) if m.startswith(prefix)) for prefix in
                     ("Created sft", "Files validated", "Job queued", "Training started", "Job succeeded")]
            assert order == sorted(order), messages

            failed = wait_job(c, bad["id"])
            assert failed["status"] == "failed" and failed["trained_tokens"] is None
            err = failed["error"]
            assert err["code"] == "invalid_training_file" and err["param"] == "training_file"
            assert "no example has any trainable tokens" in err["message"] and "max_seq_length" in err["message"]
            messages = _messages(c, bad["id"])
            assert any(m.startswith("Job failed: The training file cannot be used") for m in messages), messages
            assert not any(m.startswith(("Files validated", "Job queued", "Training started")) for m in messages)

            assert c.get(f"/fine_tuning/jobs/{dropped['id']}").json()["status"] == "cancelled"
            assert not any(m.startswith("Files validated") for m in _messages(c, dropped["id"]))

            r = c.post(f"/fine_tuning/jobs/{bad['id']}/resume")  # it never trained: validated again
            assert r.status_code == 200 and r.json()["status"] == "validating_files", r.text
            assert wait_job(c, bad["id"])["status"] == "failed"
            assert sum(m.startswith("Job failed") for m in _messages(c, bad["id"])) == 2
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)
        stop_server(api)
