"""Weights & Biases through OpenAI's ``integrations`` and seed 002's ``wandb_api_key``, against a real server in
``WANDB_MODE=offline``: the run folder holds the loss series, the job returns its integration, the key is
written nowhere (job, events, spec.json, logs, database, any file of the server's home), the estimate and the
bill count evaluation tokens, and a server without an in-process worker refuses the key."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.api.helpers import TRAIN_ROWS, jsonl, upload, wait_job
from tests.conftest import TINY, start_server, stop_server
from tests.training.wandb_reader import read_offline_run

HP = {"n_epochs": 2, "batch_size": 4, "learning_rate": 5e-3, "lora_r": 4, "lora_alpha": 8, "checkpoint_every": 3}


def _wandb_env(home: Path) -> dict[str, str]:
    return {"WANDB_MODE": "offline", "WANDB_CONFIG_DIR": str(home / "wandb-config"),
            "WANDB_CACHE_DIR": str(home / "wandb-cache"), "WANDB_DATA_DIR": str(home / "wandb-data")}


@pytest.fixture(scope="module")
def wandb_server(tmp_path_factory, model_cache):
    mp = pytest.MonkeyPatch()
    for name in ("WANDB_API_KEY", "WANDB_DIR", "WANDB_MODE"):
        mp.delenv(name, raising=False)  # the only key is the one the test sends
    home = tmp_path_factory.mktemp("wandb-home")
    server = start_server(home, model_cache, extra_env=_wandb_env(home))
    yield server
    stop_server(server)
    mp.undo()


def _files_containing(root: Path, needle: str) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


@pytest.mark.timeout(400)
def test_wandb_run_offline_with_request_key_stored_nowhere(wandb_server):
    key = "wandb-key-" + uuid.uuid4().hex + uuid.uuid4().hex
    with wandb_server.client() as c:
        train = upload(c, jsonl(TRAIN_ROWS)).json()["id"]
        valid = upload(c, jsonl(TRAIN_ROWS[:3]), name="valid.jsonl").json()["id"]
        integration = {"type": "wandb", "wandb": {"project": "tenfold-tests", "tags": ["t1"]}}
        body = {"model": TINY, "training_file": train, "validation_file": valid, "seed": 3, "hyperparameters": HP,
                "integrations": [integration], "wandb_api_key": key}
        est = c.post("/fine_tuning/jobs", json={**body, "dry_run": True}).json()
        assert est["total_steps"] == 6 and est["eval_every"] == 1 and est["n_evals"] == 6
        assert est["estimated_evaluation_tokens"] == 6 * est["validation_tokens_per_eval"] > 0
        assert est["estimated_total_tokens"] == est["estimated_trained_tokens"] + est["estimated_evaluation_tokens"]
        price = est["training_price_per_mtok_micro_usd"]
        assert est["estimated_cost_micro_usd"] == (est["estimated_total_tokens"] * price + 500_000) // 1_000_000

        r = c.post("/fine_tuning/jobs", json=body)
        assert r.status_code == 200, r.text
        job = r.json()
        assert job["integrations"] == [{"type": "wandb", "wandb": {"project": "tenfold-tests", "name": job["id"],
                                                                    "entity": None, "tags": ["t1"]}}]
        done = wait_job(c, job["id"])
        assert done["status"] == "succeeded", done
        assert done["trained_tokens"] == est["estimated_trained_tokens"]

        events = c.get(f"/fine_tuning/jobs/{job['id']}/events", params={"order": "asc", "limit": 100}).json()["data"]
        messages = [e["message"] for e in events]
        assert any("handed to the trainer's environment" in m for m in messages), messages
        info = next(e["data"] for e in events if e["message"].startswith("W&B run"))
        assert info["wandb_mode"] == "offline" and info["wandb_api_key_set"] is True
        series = c.get(f"/fine_tuning/jobs/{job['id']}/metrics").json()["data"]
        valid_points = {m["step"]: m["valid_loss"] for m in series if m.get("valid_loss") is not None}
        assert len(valid_points) == est["n_evals"]  # about ten per run by default: here every step of 6

        run = read_offline_run(Path(info["wandb_dir"]))
        assert Path(info["wandb_dir"]).parent == wandb_server.home / "artifacts" / "jobs" / job["id"] / "wandb"
        assert run.project == "tenfold-tests" and run.name == job["id"] and "t1" in run.tags
        assert run.series("train/loss") == {m["step"]: pytest.approx(m["train_loss"]) for m in series}
        assert run.series("valid/loss") == {s: pytest.approx(v) for s, v in valid_points.items()}
        assert run.config["learning_rate"] == 5e-3 and run.config["n_epochs"] == 2

        succeeded = next(e["data"] for e in events if e["message"].startswith("Job succeeded"))
        assert succeeded["evaluated_tokens"] == est["estimated_evaluation_tokens"]
        usage = [u for u in c.get("/usage", params={"limit": 100}).json()["data"] if u["request_id"] == job["id"]]
        assert len(usage) == 1 and usage[0]["prompt_tokens"] == est["estimated_total_tokens"]
        assert usage[0]["cost_micro_usd"] == est["estimated_cost_micro_usd"]

        answers = [c.get(f"/fine_tuning/jobs/{job['id']}").text, c.get("/fine_tuning/jobs").text, json.dumps(events),
                   c.get(f"/fine_tuning/jobs/{job['id']}/checkpoints").text, r.text, json.dumps(est)]
        assert not [a for a in answers if key in a]
    # spec.json, train.log, server.log, the SQLite database and its WAL, the W&B run and wandb's own folders
    assert (wandb_server.home / "artifacts" / "jobs" / job["id"] / "spec.json").is_file()
    assert not _files_containing(wandb_server.home, key)


def test_training_method_alias_and_integration_checks(wandb_server):
    prefs = [{"prompt": f"What is {a} plus 1?", "chosen": f"ANSWER: {a + 1}", "rejected": f"ANSWER: {a}"}
             for a in range(6)]
    with wandb_server.client() as c:
        pref = upload(c, jsonl(prefs), name="prefs.jsonl").json()["id"]
        sft = upload(c, jsonl(TRAIN_ROWS)).json()["id"]
        base = {"model": TINY, "dry_run": True, "hyperparameters": {"n_epochs": 1}}
        est = c.post("/fine_tuning/jobs", json={**base, "training_file": pref, "training_method": "dpo"})
        assert est.status_code == 200 and est.json()["method"] == "dpo", est.text
        for alias in ("sft", "supervised"):
            r = c.post("/fine_tuning/jobs", json={**base, "training_file": sft, "training_method": alias,
                                                  "method": {"type": "supervised"}})
            assert r.status_code == 200 and r.json()["method"] == "sft", r.text
        before = c.get("/fine_tuning/jobs", params={"limit": 100}).json()["data"]
        cases = [
            ({"training_file": pref, "training_method": "dpo", "method": {"type": "supervised"}}, "training_method",
             "training_method 'dpo' and method.type 'supervised' disagree"),
            ({"training_file": sft, "training_method": "ppo"}, "training_method", "'sft', 'supervised' or 'dpo'"),
            ({"training_file": sft, "integrations": [{"type": "slack", "slack": {}}]}, "integrations.0",
             "integration type 'slack' is not supported"),
            ({"training_file": sft, "integrations": [{"type": "wandb", "wandb": {"project": "a/b"}}]},
             "integrations.0.wandb.project", "must not contain"),
            ({"training_file": sft, "integrations": [{"type": "wandb", "wandb": {}}]},
             "integrations.0.wandb.project", "Field required"),
            ({"training_file": sft, "wandb_api_key": "has a space"}, "wandb_api_key", "printable ASCII"),
        ]
        for extra, param, fragment in cases:
            r = c.post("/fine_tuning/jobs", json={"model": TINY, **extra})
            assert r.status_code == 400, (extra, r.text)
            err = r.json()["error"]
            assert err["param"] == param and fragment in err["message"], (extra, err)
            assert "has a space" not in r.text
        assert c.get("/fine_tuning/jobs", params={"limit": 100}).json()["data"] == before

        r = c.post("/fine_tuning/jobs", json={"model": TINY, "training_file": sft, "wandb_api_key": "k" * 40,
                                              "hyperparameters": {"n_epochs": 1}})
        assert r.status_code == 200, r.text
        job = r.json()
        c.post(f"/fine_tuning/jobs/{job['id']}/cancel")
        assert job["integrations"] == [{"type": "wandb", "wandb": {"project": "tenfold", "name": job["id"],
                                                                    "entity": None, "tags": None}}]
        assert "k" * 40 not in r.text


@pytest.mark.timeout(200)
def test_a_server_without_an_in_process_worker_refuses_the_key(tmp_path, model_cache, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    api = start_server(tmp_path / "home", model_cache, role="api", extra_env=_wandb_env(tmp_path / "home"))
    try:
        with api.client() as c:
            fid = upload(c, jsonl(TRAIN_ROWS)).json()["id"]
            body = {"model": TINY, "training_file": fid,
                    "integrations": [{"type": "wandb", "wandb": {"project": "p"}}]}
            r = c.post("/fine_tuning/jobs", json={**body, "wandb_api_key": "secret-key-1234567890"})
            assert r.status_code == 400 and r.json()["error"]["param"] == "wandb_api_key", r.text
            assert "WANDB_API_KEY" in r.json()["error"]["message"] and "secret-key" not in r.text
            assert c.get("/fine_tuning/jobs").json()["data"] == []
            r = c.post("/fine_tuning/jobs", json=body)  # the workers' own WANDB_API_KEY will serve
            assert r.status_code == 200 and r.json()["integrations"][0]["wandb"]["project"] == "p", r.text
    finally:
        stop_server(api)


def test_cli_train_flags(wandb_server, tmp_path):
    import re

    from typer.testing import CliRunner

    from tenfold.cli.main import app

    prefs = tmp_path / "prefs.jsonl"
    prefs.write_bytes(jsonl([{"prompt": f"Sky {i}?", "chosen": "Blue.", "rejected": "Green."} for i in range(4)]))
    env = {"TENFOLD_CONFIG_DIR": str(tmp_path / "config"), "TENFOLD_BASE_URL": wandb_server.base_url,
           "TENFOLD_API_KEY": wandb_server.api_key, "COLUMNS": "200"}
    run = CliRunner().invoke
    common = [str(prefs), "--model", TINY, "--training-method", "dpo", "--epochs", "1"]
    wandb = ["--wandb-project", "cli-project", "--wandb-tag", "a", "--wandb-tag", "b", "--wandb-api-key", "k" * 40]
    dry = run(app, ["train", *common, "--validation-file", str(prefs), "--dry-run", *wandb], env=env)
    assert dry.exit_code == 0, dry.output
    assert re.search(r"validation: \d+ evaluations x \d+ tokens = \d+", dry.output) and "billed tokens" in dry.output
    started = run(app, ["train", *common, "--no-follow", *wandb], env=env)
    assert started.exit_code == 0, started.output
    job_id = re.search(r"created job (ftjob-\S+)", started.output).group(1)
    with wandb_server.client() as c:
        job = c.post(f"/fine_tuning/jobs/{job_id}/cancel").json()
    assert job["method"]["type"] == "dpo"
    assert job["integrations"][0]["wandb"] == {"project": "cli-project", "name": job_id, "entity": None,
                                               "tags": ["a", "b"]}
    shown = run(app, ["jobs", "get", job_id], env=env)
    assert f"cli-project ({job_id})" in shown.output and "k" * 40 not in shown.output
    orphan = run(app, ["train", *common, "--wandb-tag", "a"], env=env)
    assert orphan.exit_code != 0 and "need --wandb-project" in orphan.output
