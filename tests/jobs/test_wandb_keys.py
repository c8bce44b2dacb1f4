"""Where a W&B key sent with a job lives: this process's memory (``tenfold.jobs.wandb_keys``), read by the
worker of the same process into the trainer's environment only; the worker's own ``WANDB_API_KEY`` is the
fallback; the key is in no event."""

from __future__ import annotations

import json

import pytest

from tenfold.artifacts.storage import ArtifactStore
from tenfold.config import Settings
from tenfold.jobs import wandb_keys
from tenfold.jobs.worker import Worker
from tenfold.store import repo
from tenfold.store.db import Database

REQUEST_KEY = "request-key-0123456789abcdef0123456789abcdef"
ENV_KEY = "environment-key-0123456789abcdef0123456789ab"


@pytest.fixture
def worker(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 't.db'}")
    db.migrate()
    with db.session() as s:
        org = repo.create_organization(s, name="o").id
        for job_id in ("ftjob-a", "ftjob-b", "ftjob-c"):
            repo.create_job(s, job_id=job_id, organization_id=org, api_key_id=None, model="m", training_file="f",
                            validation_file=None, suffix=None, seed=1, spec={}, hyperparameters={})
    yield Worker(Settings(home=tmp_path), db, ArtifactStore(tmp_path / "artifacts"))
    db.dispose()


def _events(worker: Worker, job_id: str) -> str:
    with worker.db.session() as s:
        rows, _ = repo.list_events(s, job_id=job_id, limit=100, after=None)
        return json.dumps([[r.message, r.data] for r in rows])


def test_request_key_goes_to_the_child_env_only(worker: Worker, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", ENV_KEY)
    wandb = {"wandb": {"project": "p", "name": "ftjob-a"}}
    wandb_keys.hold("ftjob-a", REQUEST_KEY)
    try:
        env = worker._child_env("ftjob-a", wandb)
        assert env["WANDB_API_KEY"] == REQUEST_KEY  # the request's key wins over the worker's own
        assert "handed to the trainer's environment" in _events(worker, "ftjob-a")
        assert worker._child_env("ftjob-b", wandb)["WANDB_API_KEY"] == ENV_KEY  # the fallback
        assert "using WANDB_API_KEY from the worker's environment" in _events(worker, "ftjob-b")
        monkeypatch.delenv("WANDB_API_KEY")
        assert "WANDB_API_KEY" not in worker._child_env("ftjob-c", wandb) and _events(worker, "ftjob-c") == "[]"
        assert "WANDB_API_KEY" not in worker._child_env("ftjob-a", {})  # no W&B run: no key handed over
        for job_id in ("ftjob-a", "ftjob-b"):
            text = _events(worker, job_id)
            assert REQUEST_KEY not in text and ENV_KEY not in text
    finally:
        wandb_keys.drop("ftjob-a")
    assert wandb_keys.get("ftjob-a") is None


def test_a_worker_in_this_process_is_what_lets_the_api_take_keys(worker: Worker) -> None:
    assert not wandb_keys.can_hold()
    wandb_keys.worker_started()
    try:
        assert wandb_keys.can_hold()
    finally:
        wandb_keys.worker_stopped()
    assert not wandb_keys.can_hold()
