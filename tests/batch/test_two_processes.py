"""Two api processes behind one PostgreSQL database (as behind a load balancer): batches created through
either run exactly once (each batch is stepped only by the runner holding its lease, so no line is generated
twice: the tokens both engines generated add up to exactly the batches' work), and a deployment created
through either gets exactly the replicas it asks for (one controller holds the lease)."""

from __future__ import annotations

import re
import shutil
import time

import pytest

from tests.batch.helpers import line, read_lines, upload_batch_file, wait_batch
from tests.conftest import fresh_pg_database, start_server, stop_server

ENV = {"TENFOLD_BATCH_CONCURRENCY": "2", "TENFOLD_BATCH_POLL_SECONDS": "0.1", "TENFOLD_BATCH_IDLE_SECONDS": "0",
       "TENFOLD_CONTROLLER_INTERVAL_SECONDS": "0.3", "TENFOLD_CONTROLLER_LEASE_SECONDS": "5",
       "TENFOLD_REPLICA_TORCH_THREADS": "1", "TENFOLD_REPLICA_KV_CACHE_BYTES": str(16 << 20)}
LINES, TOKENS = 12, 6


def generated(server) -> float:
    with server.client() as c:
        text = c.get(server.url + "/metrics").text
    return sum(float(m) for m in re.findall(r"^tenfold_engine_generation_tokens_total\{[^}]*\} (\S+)$", text, re.M))


@pytest.mark.timeout(600)
def test_two_api_processes_share_batches_and_deployments_without_doing_anything_twice(tmp_path, model_cache):
    with fresh_pg_database() as url:
        home_a, home_b = tmp_path / "a", tmp_path / "b"
        a = start_server(home_a, model_cache, database_url=url, extra_env=ENV)
        b = None
        try:
            home_b.mkdir()
            (home_b / "artifacts").symlink_to(home_a / "artifacts", target_is_directory=True)  # a shared volume
            shutil.copy(home_a / "admin_key", home_b / "admin_key")
            b = start_server(home_b, model_cache, database_url=url, extra_env=ENV)
            batches = []
            for i, server in enumerate((a, b, a, b)):
                with server.client() as c:
                    rows = [line(f"b{i}-{n}", f"Batch {i}, item {n}.", max_tokens=TOKENS, ignore_eos=True)
                            for n in range(LINES)]
                    fid = upload_batch_file(c, rows).json()["id"]
                    r = c.post("/batches", json={"input_file_id": fid, "endpoint": "/v1/chat/completions",
                                                 "completion_window": "24h"})
                    assert r.status_code == 200, r.text
                    batches.append(r.json()["id"])
            with b.client() as c:  # either process sees every batch: one database
                done = [wait_batch(c, batch_id, timeout=300) for batch_id in batches]
                for i, d in enumerate(done):
                    assert d["status"] == "completed" and d["request_counts"]["completed"] == LINES, d
                    ids = [x["custom_id"] for x in read_lines(c, d["output_file_id"])]
                    assert sorted(ids) == sorted(f"b{i}-{n}" for n in range(LINES))
            # every line was generated once, by one of the two engines
            assert generated(a) + generated(b) == len(batches) * LINES * TOKENS

            with a.client() as c:
                dep = c.post("/deployments", json={"base_model": "tiny-random-llama", "min_replicas": 1}).json()
                deadline = time.time() + 120
                while time.time() < deadline:
                    d = c.get(f"/deployments/{dep['id']}").json()
                    if any(r["healthy"] for r in d["replicas"]):
                        break
                    time.sleep(0.3)
                else:
                    raise AssertionError(d)
            time.sleep(3)  # ten more controller ticks in each process: a second controller would add a replica
            with b.client() as c:
                d = c.get(f"/deployments/{dep['id']}").json()
                assert len(d["replicas"]) == 1 and d["desired_replicas"] == 1, d
                assert c.delete(f"/deployments/{dep['id']}").status_code == 200
        finally:
            for server in (b, a):
                if server is not None:
                    stop_server(server)
