"""Replicas placed by Ray (``TENFOLD_CLUSTER=local``: a real local Ray instance the server starts, once for the
module): a deployment's replica is a named Ray actor that ``ray list actors`` shows and ``deployments get``
places, it serves through the api, a replica process killed on its node is replaced by the controller, and a
cluster address that does not answer is a clear error that creates nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY, start_server, stop_server, wait_for

pytestmark = pytest.mark.timeout(600)
ENV = {"TENFOLD_CLUSTER": "local", "TENFOLD_REPLICA_TORCH_THREADS": "1", "TENFOLD_CONTROLLER_INTERVAL_SECONDS": "0.3",
       "TENFOLD_REPLICA_KV_CACHE_BYTES": str(16 << 20), "TENFOLD_DEPLOYMENT_UNAVAILABLE_WAIT_SECONDS": "30",
       "RAY_USAGE_STATS_ENABLED": "0"}




@pytest.fixture(scope="module")
def ray_server(tmp_path_factory, model_cache):
    server = start_server(tmp_path_factory.mktemp("ray-home"), model_cache, extra_env=ENV)
    yield server
    stop_server(server)


def ready(c, dep_id: str, not_in: set[str] = frozenset()):
    d = c.get(f"/deployments/{dep_id}").json()
    live = [r for r in d["replicas"] if r["healthy"] and r["id"] not in not_in]
    return (d, live[0]) if live else None


def ray_actors() -> list[dict]:
    out = subprocess.run([str(Path(sys.executable).parent / "ray"), "list", "actors", "--format", "json",
                          "--filter", "state=ALIVE"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "RAY_AUTH_MODE": "token"})  # the local cluster's token (~/.ray)
    assert out.returncode == 0, out.stderr[-2000:]
    if "No resource in the cluster" in out.stdout:
        return []
    start = out.stdout.find("[")  # after any notice the CLI prints first
    assert start >= 0, (out.stdout[-2000:], out.stderr[-2000:])
    return json.loads(out.stdout[start:])


def test_replicas_are_ray_actors_and_a_killed_one_is_replaced(ray_server):
    server = ray_server
    with server.client() as c:
        r = c.post("/deployments", json={"base_model": TINY, "display_name": "on-ray"})
        assert r.status_code == 200, r.text
        dep_id = r.json()["id"]
        d, replica = wait_for("a replica placed by Ray", lambda: ready(c, dep_id), timeout=180)
        assert replica["placement"].startswith(f"ray actor replica-{replica['id']} on node "), replica
        names = {a["name"]: a for a in ray_actors()}
        actor = names[f"replica-{replica['id']}"]
        assert actor["ray_namespace"] == "tenfold" and actor["class_name"].endswith("_ReplicaActor")
        answer = c.post("/chat/completions", json={"model": dep_id, "max_tokens": 3, "temperature": 0,
                                                   "messages": [{"role": "user", "content": "Hi"}]})
        assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] == 3

        os.kill(replica["pid"], signal.SIGKILL)  # the replica's process dies on its node
        _, new = wait_for("a replacement replica", lambda: ready(c, dep_id, not_in={replica["id"]}), timeout=180)
        assert new["placement"].startswith(f"ray actor replica-{new['id']}")
        alive = {a["name"] for a in ray_actors()}
        assert f"replica-{new['id']}" in alive and f"replica-{replica['id']}" not in alive
        answer = c.post("/chat/completions", json={"model": dep_id, "max_tokens": 3, "temperature": 0,
                                                   "messages": [{"role": "user", "content": "Hi"}]})
        assert answer.status_code == 200
        assert c.delete(f"/deployments/{dep_id}").status_code == 200
        wait_for("the actors to go", lambda: not any(a["name"].startswith("replica-") for a in ray_actors()),
                 timeout=180)


def test_a_cluster_that_does_not_answer_is_a_clear_error_and_creates_nothing(tmp_path, model_cache):
    server = start_server(tmp_path / "home", model_cache, extra_env={"TENFOLD_CLUSTER": "127.0.0.1:9"})
    try:
        with server.client() as c:
            r = c.post("/deployments", json={"base_model": TINY})
            assert r.status_code == 503, r.text
            err = r.json()["error"]
            assert err["code"] == "cluster_unavailable" and "127.0.0.1:9" in err["message"], err
            assert c.get("/deployments", params={"include_deleted": True}).json()["data"] == []
    finally:
        stop_server(server)
