"""Fine-tuning jobs against a real server: dry-run estimate, status flow with events, the metrics series,
billing of trained tokens, resume of a cancelled job, continued fine-tuning (DPO on an SFT checkpoint) and
bad requests that leave nothing behind."""

from __future__ import annotations

import json
import time

import pytest

from tests.api.helpers import TRAIN_ROWS, jsonl, upload, wait_job

HP = {"n_epochs": 2, "batch_size": 4, "learning_rate": 5e-3, "lora_r": 4, "lora_alpha": 8, "checkpoint_every": 2}
PREFS = [{"prompt": f"What is {a} plus {b}?", "chosen": f"ANSWER: {a + b}", "rejected": f"ANSWER: {a + b + 1}"}
         for a in range(1, 5) for b in range(1, 3)]


def _job_ids(c) -> list[str]:
    return [j["id"] for j in c.get("/fine_tuning/jobs", params={"limit": 100}).json()["data"]]


def test_dry_run_status_flow_metrics_and_billing(server):
    with server.client() as c:
        fid = upload(c, jsonl(TRAIN_ROWS)).json()["id"]
        before = _job_ids(c)
        body = {"model": "tiny-random-llama", "training_file": fid, "seed": 3, "hyperparameters": HP}
        est = c.post("/fine_tuning/jobs", json={**body, "dry_run": True})
        assert est.status_code == 200, est.text
        est = est.json()
        assert est["object"] == "fine_tuning.job.estimate" and est["n_examples"] == 12 and est["total_steps"] == 6
        assert est["estimated_trained_tokens"] == 2 * est["tokens_per_epoch"] > 0
        price = est["training_price_per_mtok_micro_usd"]
        assert est["estimated_cost_micro_usd"] == (est["estimated_trained_tokens"] * price + 500_000) // 1_000_000
        assert _job_ids(c) == before  # a dry run creates nothing

        job = c.post("/fine_tuning/jobs", json=body).json()
        assert job["status"] == "validating_files" and job["method"]["type"] == "supervised"
        done = wait_job(c, job["id"])
        assert done["status"] == "succeeded", done
        assert done["trained_tokens"] == est["estimated_trained_tokens"]  # the estimate is exact

        events = c.get(f"/fine_tuning/jobs/{job['id']}/events", params={"order": "asc", "limit": 100}).json()["data"]
        messages = [e["message"] for e in events]
        order = [next(i for i, m in enumerate(messages) if m.startswith(prefix)) for prefix in
                 ("Created sft fine-tuning job", "Files validated", "Job queued", "Training started",
                  "Job succeeded")]
        assert order == sorted(order), messages

        series = c.get(f"/fine_tuning/jobs/{job['id']}/metrics").json()["data"]
        assert [m["step"] for m in series] == [1, 2, 3, 4, 5, 6]
        for m in series:
            assert m["train_loss"] > 0 and m["learning_rate"] > 0 and m["tokens_per_second"] > 0
            assert m["elapsed_seconds"] >= 0
        assert c.get("/fine_tuning/jobs/ftjob-nope/metrics").status_code == 404

        usage = [u for u in c.get("/usage", params={"limit": 100}).json()["data"] if u["request_id"] == job["id"]]
        assert len(usage) == 1
        assert usage[0]["endpoint"] == "fine_tuning.jobs" and usage[0]["prompt_tokens"] == done["trained_tokens"]
        assert usage[0]["cost_micro_usd"] == (done["trained_tokens"] * price + 500_000) // 1_000_000


def test_bad_requests_leave_nothing_behind(server):
    with server.client() as c:
        sft_file = upload(c, jsonl(TRAIN_ROWS)).json()["id"]
        pref_file = upload(c, jsonl(PREFS), name="prefs.jsonl").json()["id"]
        before = _job_ids(c)
        cases = [
            ({"training_file": sft_file, "method": {"type": "dpo"}}, "training_file", "preference pairs"),
            ({"training_file": pref_file}, "training_file", "method 'dpo'"),
            ({"training_file": sft_file, "hyperparameters": {"checkpoint_every": 2, "n_checkpoints": 2}},
             "hyperparameters.checkpoint_every", "not both"),
            ({"training_file": sft_file, "hyperparameters": {"lr_scheduler": "step"}},
             "hyperparameters.lr_scheduler", "lr_scheduler"),
            ({"training_file": sft_file, "hyperparameters": {"batch_size": 0}}, "hyperparameters.batch_size",
             "batch_size"),
            ({"training_file": sft_file, "hyperparameters": {"dpo_beta": 0.2}}, "hyperparameters.dpo_beta", "dpo"),
            ({"training_file": sft_file, "from_checkpoint": "ftjob-nope/step-2"}, "from_checkpoint", "ftjob-nope"),
            ({"training_file": sft_file, "from_checkpoint": "not a job"}, "from_checkpoint", "<job id>"),
        ]
        for extra, param, fragment in cases:
            r = c.post("/fine_tuning/jobs", json={"model": "tiny-random-llama", **extra})
            assert r.status_code in (400, 404), (extra, r.text)
            err = r.json()["error"]
            assert err["param"] == param and fragment in err["message"], (extra, err)
        bad = upload(c, b'{"prompt": "a", "completion": "b"}\n{"prompt": 1}\n[2]\n')
        assert bad.status_code == 400
        msg = bad.json()["error"]["message"]
        assert "2 of 3 lines are invalid" in msg and "line 2:" in msg and "line 3:" in msg
        assert _job_ids(c) == before


def _checkpoints(c, job_id: str) -> list[int]:
    return sorted(ck["step_number"] for ck in c.get(f"/fine_tuning/jobs/{job_id}/checkpoints").json()["data"])


@pytest.mark.timeout(400)
def test_resume_cancelled_job_matches_uninterrupted_run(server):
    with server.client() as c:
        fid = upload(c, jsonl(TRAIN_ROWS * 3)).json()["id"]
        body = {"model": "tiny-random-llama", "training_file": fid, "seed": 11,
                "hyperparameters": {"n_epochs": 6, "batch_size": 2, "learning_rate": 2e-3, "lora_r": 2,
                                    "lora_dropout": 0.1, "checkpoint_every": 5}}
        ref = c.post("/fine_tuning/jobs", json=body).json()["id"]
        ref_job = wait_job(c, ref)
        assert ref_job["status"] == "succeeded"

        job_id = c.post("/fine_tuning/jobs", json=body).json()["id"]
        deadline = time.time() + 120
        while not _checkpoints(c, job_id):
            assert time.time() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
        r = c.post(f"/fine_tuning/jobs/{job_id}/resume")
        assert r.status_code == 409 and "only failed or cancelled" in r.json()["error"]["message"]
        assert c.post(f"/fine_tuning/jobs/{job_id}/cancel").json()["status"] == "cancelled"
        time.sleep(2.5)  # the worker stops the trainer on its next heartbeat
        kept = _checkpoints(c, job_id)
        assert kept and kept[-1] < 108
        assert c.post("/adapters", json={"model": f"{job_id}/step-{kept[-1]}"}).status_code == 200  # deployable

        r = c.post(f"/fine_tuning/jobs/{job_id}/resume")
        assert r.status_code == 200 and r.json()["status"] == "queued", r.text
        done = wait_job(c, job_id)
        assert done["status"] == "succeeded" and done["error"] is None
        events = [e["message"] for e in c.get(f"/fine_tuning/jobs/{job_id}/events",
                                              params={"order": "asc", "limit": 100}).json()["data"]]
        assert any(m.startswith("Resume requested") for m in events)
        resumed_step = next(int(m.split("step ")[1].split()[0]) for m in events
                            if m.startswith("Resuming from checkpoint step"))
        assert resumed_step >= kept[-1]
        # Same seed, same data: the resumed job ends exactly where the uninterrupted one did.
        assert done["trained_tokens"] == ref_job["trained_tokens"]
        assert done["progress"]["loss"] == pytest.approx(ref_job["progress"]["loss"], abs=1e-5)
        final = {e["data"]["train_loss"] for e in _done_events(c, (ref, job_id))}
        assert max(final) - min(final) < 1e-5


def _done_events(c, job_ids):
    for job_id in job_ids:
        events = c.get(f"/fine_tuning/jobs/{job_id}/events", params={"limit": 20}).json()["data"]
        yield next(e for e in events if e["message"].startswith("Job succeeded"))


def test_dpo_on_top_of_an_sft_checkpoint(server):
    with server.client() as c:
        fid = upload(c, jsonl(TRAIN_ROWS)).json()["id"]
        sft = c.post("/fine_tuning/jobs", json={"model": "tiny-random-llama", "training_file": fid, "seed": 1,
                                                "hyperparameters": HP}).json()["id"]
        assert wait_job(c, sft)["status"] == "succeeded"
        pref = upload(c, jsonl(PREFS), name="prefs.jsonl").json()["id"]
        r = c.post("/fine_tuning/jobs", json={"model": "tiny-random-llama", "training_file": pref,
                                              "from_checkpoint": f"{sft}/step-2", "hyperparameters": {"lora_r": 8}})
        assert r.status_code == 400 and "lora_r=4" in r.json()["error"]["message"]
        r = c.post("/fine_tuning/jobs", json={
            "model": "tiny-random-llama", "training_file": pref, "from_checkpoint": f"{sft}/step-2", "seed": 2,
            "method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.5, "n_epochs": 4, "batch_size": 4,
                                                                  "learning_rate": 1e-2}}}})
        assert r.status_code == 200, r.text
        job = r.json()
        assert job["method"]["type"] == "dpo" and job["from_checkpoint"] == f"{sft}/step-2"
        assert job["hyperparameters"]["dpo_beta"] == 0.5 and job["hyperparameters"]["lora_r"] == 4
        done = wait_job(c, job["id"])
        assert done["status"] == "succeeded", done
        series = c.get(f"/fine_tuning/jobs/{job['id']}/metrics").json()["data"]
        assert series[-1]["reward_margin"] > series[0]["reward_margin"]
        r = c.post("/fine_tuning/jobs", json={"model": "tiny-random-llama", "training_file": fid,
                                              "from_checkpoint": job["id"], "dry_run": True})
        assert r.status_code == 200 and r.json()["from_checkpoint"] == job["id"]
        assert json.dumps(r.json())  # plain JSON
