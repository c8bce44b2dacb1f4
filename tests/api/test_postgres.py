"""The same server on PostgreSQL (loopback): migrations, upload, train, deploy, chat, usage."""

from __future__ import annotations

import pytest

from tests.api.helpers import TRAIN_ROWS, jsonl, train_tiny, upload, wait_job

pytestmark = pytest.mark.postgres


def test_walking_skeleton_on_postgres(pg_server):
    with pg_server.client() as c:
        assert upload(c, b'{"prompt": 1}\n').status_code == 400
        assert c.get("/files").json()["data"] == []
        assert upload(c, jsonl(TRAIN_ROWS)).status_code == 200
        job = wait_job(c, train_tiny(c, checkpoint_every=3, n_epochs=1)["id"])
        assert job["status"] == "succeeded" and job["checkpoints"] == [f"{job['id']}/step-3"]
        c.post("/adapters", json={"model": f"{job['id']}/step-3"}).raise_for_status()
        r = c.post("/chat/completions", json={"model": job["id"], "max_tokens": 3,
                                              "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200 and r.headers["x-tenfold-checkpoint"] == f"{job['id']}/step-3"
        everything = c.get("/usage").json()["data"]
        assert [u["request_id"] for u in everything if u["endpoint"] == "fine_tuning.jobs"] == [job["id"]]
        usage = [u for u in everything if u["endpoint"] != "fine_tuning.jobs"]
        assert len(usage) == 1 and usage[0]["checkpoint"] == f"{job['id']}/step-3"
        # the deploy smoke generation is not a billed request
        assert usage[0]["completion_tokens"] == 3
