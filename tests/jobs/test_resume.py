"""A running job survives its server: after a kill (stale heartbeat → requeued by the next worker) or a
clean stop (requeued at once), it resumes from its last checkpoint and finishes."""

from __future__ import annotations

import time

import pytest

from tests.api.helpers import TRAIN_ROWS, jsonl, upload, wait_job
from tests.conftest import start_server, stop_server


@pytest.mark.parametrize("how", ["kill", "terminate"])
def test_job_resumes_from_last_checkpoint_after_server_stops(tmp_path, model_cache, how):
    home = tmp_path / "home"
    env = {"TENFOLD_JOB_LEASE_SECONDS": "3"}
    a = start_server(home, model_cache, extra_env=env)
    try:
        with a.client() as c:
            fid = upload(c, jsonl(TRAIN_ROWS * 4)).json()["id"]
            job_id = c.post("/fine_tuning/jobs", json={
                "model": "tiny-random-llama", "training_file": fid, "seed": 5,
                "hyperparameters": {"n_epochs": 15, "batch_size": 1, "lora_r": 2, "checkpoint_every": 10}}).json()["id"]
            deadline = time.time() + 120
            while not c.get(f"/fine_tuning/jobs/{job_id}/checkpoints").json()["data"]:
                assert time.time() < deadline, "no checkpoint appeared"
                time.sleep(0.1)
    finally:
        if how == "kill":  # no clean shutdown: the job stays 'running' with a heartbeat that goes stale
            a.proc.kill()
            a.proc.wait()
        else:
            stop_server(a)
    b = start_server(home, model_cache, extra_env=env)
    try:
        with b.client() as c:
            job = wait_job(c, job_id, timeout=240)
            assert job["status"] == "succeeded", job
            events = [e["message"] for e in c.get(f"/fine_tuning/jobs/{job_id}/events",
                                                  params={"order": "asc", "limit": 100}).json()["data"]]
            marker = "requeued" if how == "kill" else "The server stopped; the job is queued again"
            assert any(marker in m for m in events), events
            assert any(m.startswith("Resuming from checkpoint step") for m in events)
            steps = [ck["step_number"] for ck in c.get(f"/fine_tuning/jobs/{job_id}/checkpoints").json()["data"]]
            assert steps == sorted(set(steps), reverse=True)
            assert max(steps) >= job["progress"]["total_steps"] // 10 * 10
    finally:
        stop_server(b)
