"""Fine-tuning jobs against a real server: validation, the full run (events, checkpoints, final adapter),
cancel, deploy while training, and the no-final-adapter deploy error."""

from __future__ import annotations

import time

from tests.api.helpers import TRAIN_ROWS, jsonl, train_tiny, upload, wait_job


def test_create_validation_errors(server):
    with server.client() as c:
        fid = upload(c, jsonl(TRAIN_ROWS)).json()["id"]
        r = c.post("/fine_tuning/jobs", json={"model": "gpt-9", "training_file": fid})
        assert r.status_code == 400 and "tiny-random-llama" in r.json()["error"]["message"]
        r = c.post("/fine_tuning/jobs", json={"model": "tiny-random-llama", "training_file": "file-nope"})
        assert r.status_code == 404 and r.json()["error"]["param"] == "training_file"
        r = c.post("/fine_tuning/jobs", json={"model": "tiny-random-llama", "training_file": fid,
                                              "hyperparameters": {"lora_r": 0}})
        assert r.status_code == 400 and r.json()["error"]["param"] == "hyperparameters.lora_r"
        r = c.post("/fine_tuning/jobs", json={"model": "tiny-random-llama", "training_file": fid,
                                              "hyperparameters": {"n_epochz": 2}})
        assert r.status_code == 400 and "n_epochz" in r.json()["error"]["message"]
        r = c.post("/fine_tuning/jobs", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 400


def test_full_run_events_checkpoints_and_final_adapter(server):
    with server.client() as c:
        job = train_tiny(c, checkpoint_every=2, n_epochs=2)
        assert job["status"] == "validating_files" and job["id"].startswith("ftjob-")
        assert job["hyperparameters"]["lora_r"] == 4 and job["hyperparameters"]["checkpoint_every"] == 2
        done = wait_job(c, job["id"])
        assert done["status"] == "succeeded", done
        assert done["fine_tuned_model"] == job["id"] and done["trained_tokens"] > 0
        assert done["progress"]["step"] == done["progress"]["total_steps"] == 6
        events = c.get(f"/fine_tuning/jobs/{job['id']}/events", params={"order": "asc", "limit": 100}).json()["data"]
        metrics = [e for e in events if e["type"] == "metrics"]
        assert [e["data"]["step"] for e in metrics] == [1, 2, 3, 4, 5, 6]
        assert all(e["data"]["loss"] > 0 for e in metrics)
        assert metrics[-1]["data"]["loss"] < metrics[0]["data"]["loss"]
        newest_first = c.get(f"/fine_tuning/jobs/{job['id']}/events").json()["data"]
        assert newest_first[0]["id"] == events[-1]["id"]
        cks = c.get(f"/fine_tuning/jobs/{job['id']}/checkpoints").json()["data"]
        assert [ck["step_number"] for ck in cks] == [6, 4, 2]
        assert cks[-1]["fine_tuned_model_checkpoint"] == f"{job['id']}/step-2"
        assert "train_loss" in cks[0]["metrics"]
        folder = server.home / "artifacts" / "jobs" / job["id"] / "step-2"
        assert (folder / "adapter_config.json").exists() and (folder / "adapter_model.safetensors").exists()
        assert job["id"] in [j["id"] for j in c.get("/fine_tuning/jobs").json()["data"]]


def _long_job(c) -> str:
    fid = upload(c, jsonl(TRAIN_ROWS * 4)).json()["id"]
    r = c.post("/fine_tuning/jobs", json={"model": "tiny-random-llama", "training_file": fid, "hyperparameters": {
        "n_epochs": 100, "batch_size": 1, "learning_rate": 1e-3, "lora_r": 2, "checkpoint_every": 3}})
    r.raise_for_status()
    return r.json()["id"]


def _wait_checkpoint(c, job_id: str, timeout: float = 120) -> list[dict]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        cks = c.get(f"/fine_tuning/jobs/{job_id}/checkpoints").json()["data"]
        if cks:
            return cks
        time.sleep(0.2)
    raise TimeoutError("no checkpoint appeared")


def test_deploy_while_training_then_cancel_then_no_final_adapter(server):
    with server.client() as c:
        job_id = _long_job(c)
        try:
            _deploy_then_cancel(c, job_id)
        finally:
            c.post(f"/fine_tuning/jobs/{job_id}/cancel")


def _deploy_then_cancel(c, job_id: str) -> None:
    if True:
        cks = _wait_checkpoint(c, job_id)
        step = cks[-1]["step_number"]
        assert c.get(f"/fine_tuning/jobs/{job_id}").json()["status"] == "running"
        r = c.post("/adapters", json={"model": f"{job_id}/step-{step}"})
        assert r.status_code == 200, r.text
        chat = c.post("/chat/completions", json={"model": job_id, "max_tokens": 3,
                                                 "messages": [{"role": "user", "content": "hi"}]})
        assert chat.status_code == 200 and chat.headers["x-tenfold-checkpoint"] == f"{job_id}/step-{step}"

        r = c.post(f"/fine_tuning/jobs/{job_id}/cancel")
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        time.sleep(2)  # the worker stops the trainer on its next heartbeat
        job = c.get(f"/fine_tuning/jobs/{job_id}").json()
        assert job["status"] == "cancelled" and job["fine_tuned_model"] is None
        steps = sorted(ck["step_number"] for ck in c.get(f"/fine_tuning/jobs/{job_id}/checkpoints").json()["data"])
        r = c.post("/adapters", json={"model": job_id})
        assert r.status_code == 409
        msg = r.json()["error"]["message"]
        assert "no final adapter" in msg and f"tenfold deploy {job_id}/step-{steps[-1]}" in msg
        assert ", ".join(map(str, steps)) in msg
        # cancelling again is harmless
        assert c.post(f"/fine_tuning/jobs/{job_id}/cancel").json()["status"] == "cancelled"


def test_cancel_queued_job_and_unknown_job(server):
    with server.client() as c:
        assert c.post("/fine_tuning/jobs/ftjob-doesnotexist/cancel").status_code == 404
        r = c.get("/fine_tuning/jobs/ftjob-doesnotexist/events")
        assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
