"""A server killed (SIGKILL) in the middle of a batch resumes it on restart: the final output holds every
custom_id exactly once, and every line is billed exactly once."""

from __future__ import annotations

import time
from collections import Counter

from tests.batch.helpers import line, read_lines, upload_batch_file, wait_batch
from tests.conftest import start_server, stop_server

N = 60


def test_kill_mid_batch_then_restart(tmp_path, model_cache):
    env = {"TENFOLD_BATCH_CONCURRENCY": "1", "TENFOLD_BATCH_POLL_SECONDS": "0.1"}
    home = tmp_path / "home"
    server = start_server(home, model_cache, extra_env=env)
    try:
        with server.client() as c:
            fid = upload_batch_file(c, [line(f"k-{i}", f"Item {i}: write a few words.", max_tokens=12)
                                        for i in range(N)]).json()["id"]
            batch_id = c.post("/batches", json={"input_file_id": fid, "endpoint": "/v1/chat/completions",
                                                "completion_window": "24h"}).json()["id"]
            deadline = time.time() + 60
            while time.time() < deadline:
                b = c.get(f"/batches/{batch_id}").json()
                if b["request_counts"]["completed"] >= 3:
                    break
                time.sleep(0.02)
        server.proc.kill()  # no clean shutdown: the line in flight is lost mid-generation
        server.proc.wait(timeout=20)
        assert b["status"] == "in_progress" and 3 <= b["request_counts"]["completed"] < N, b
    finally:
        stop_server(server)

    server = start_server(home, model_cache, extra_env=env)
    try:
        with server.client() as c:
            done = wait_batch(c, batch_id, timeout=180)
            assert done["status"] == "completed", done
            assert done["request_counts"] == {"total": N, "completed": N, "failed": 0}
            out = read_lines(c, done["output_file_id"])
            assert Counter(o["custom_id"] for o in out) == Counter(f"k-{i}" for i in range(N))
            assert done["error_file_id"] is None
            usage = []
            after = None
            while True:
                page = c.get("/usage", params={"limit": 100, "after": after}).json()
                usage += [u for u in page["data"] if u["batch_id"] == batch_id]
                if not page["has_more"]:
                    break
                after = page["last_id"]
            assert Counter(u["request_id"] for u in usage) == Counter(o["id"] for o in out), "each line billed once"
    finally:
        stop_server(server)
