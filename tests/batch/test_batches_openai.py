"""The Batch API driven by the official ``openai`` SDK: files.create (purpose batch), batches.create /
retrieve / list / cancel, files.content; output and error lines in the OpenAI format, joined on custom_id;
batch usage billed with the batch discount."""

from __future__ import annotations

import io
import json
import time

import openai
import pytest

from tests.batch.helpers import jsonl, line, read_lines, upload_batch_file, wait_batch
from tests.conftest import new_org_key


@pytest.fixture(scope="module")
def oai(server):
    return openai.OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0, timeout=120)


def _wait(oai, batch_id, until=("completed", "failed", "expired", "cancelled"), timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        b = oai.batches.retrieve(batch_id)
        if b.status in until:
            return b
        time.sleep(0.1)
    raise TimeoutError(b.status)


def test_batch_lifecycle_output_and_error_files(oai, server):
    rows = [line(f"req-{i}", f"Question {i}?", max_tokens=3 + i % 3) for i in range(6)]
    rows.append(line("bad-model", model="no-such-model"))
    f = oai.files.create(file=("in.jsonl", io.BytesIO(jsonl(rows))), purpose="batch")
    assert f.purpose == "batch"
    b = oai.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h",
                           metadata={"run": "conformance"})
    assert b.object == "batch" and b.id.startswith("batch_") and b.status == "validating"
    assert b.metadata == {"run": "conformance"} and b.expires_at - b.created_at == 24 * 3600
    done = _wait(oai, b.id)
    assert done.status == "completed", done
    assert done.created_at <= done.in_progress_at <= done.finalizing_at <= done.completed_at
    assert done.failed_at is None and done.cancelled_at is None
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (7, 6, 1)

    out = [json.loads(x) for x in oai.files.content(done.output_file_id).text.splitlines()]
    err = [json.loads(x) for x in oai.files.content(done.error_file_id).text.splitlines()]
    assert sorted(o["custom_id"] for o in out) == [f"req-{i}" for i in range(6)]
    for o in out:
        assert o["error"] is None and o["id"].startswith("batch_req_")
        resp = o["response"]
        assert resp["status_code"] == 200 and resp["request_id"] == o["id"]
        body = resp["body"]
        assert body["object"] == "chat.completion" and body["choices"][0]["message"]["role"] == "assistant"
        i = int(o["custom_id"].split("-")[1])
        assert body["usage"]["completion_tokens"] == 3 + i % 3
    assert [e["custom_id"] for e in err] == ["bad-model"]
    assert err[0]["response"]["status_code"] == 404
    assert "no-such-model" in err[0]["response"]["body"]["error"]["message"]
    assert oai.files.retrieve(done.output_file_id).purpose == "batch_output"

    # batch usage: one row per line that ran, billed at the batch discount
    with server.client() as c:
        ledger = [u for u in c.get("/usage", params={"limit": 100}).json()["data"] if u["batch_id"] == b.id]
    assert sorted(u["request_id"] for u in ledger) == sorted(o["id"] for o in out)
    for u in ledger:
        assert u["usage_type"] == "BATCH_INFERENCE_USAGE" and u["discount_bps"] == 5000
    assert done.usage.output_tokens == sum(u["completion_tokens"] for u in ledger) == sum(3 + i % 3 for i in range(6))
    assert done.usage.input_tokens == sum(u["prompt_tokens"] for u in ledger)
    assert done.usage.total_tokens == done.usage.input_tokens + done.usage.output_tokens


def test_list_is_paginated_newest_first(oai):
    f = oai.files.create(file=("in.jsonl", io.BytesIO(jsonl([line("x")]))), purpose="batch")
    ids = [oai.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h").id
           for _ in range(3)]
    first = oai.batches.list(limit=2)
    assert [b.id for b in first.data] == ids[::-1][:2] and first.has_more
    rest = oai.batches.list(limit=2, after=first.data[-1].id)
    assert rest.data[0].id == ids[0]
    all_ids = [b.id for b in oai.batches.list(limit=2)]  # auto-pagination walks every page
    assert set(ids) <= set(all_ids)
    for i in ids:
        _wait(oai, i)


def test_cancel_keeps_partial_results(server, oai):
    rows = [line(f"c-{i}", f"Tell me a long story number {i}.", max_tokens=48) for i in range(40)]
    f = oai.files.create(file=("in.jsonl", io.BytesIO(jsonl(rows))), purpose="batch")
    b = oai.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    deadline = time.time() + 60
    while oai.batches.retrieve(b.id).request_counts.completed < 1 and time.time() < deadline:
        time.sleep(0.05)
    c = oai.batches.cancel(b.id)
    assert c.status in ("cancelling", "cancelled") and c.cancelling_at is not None
    done = _wait(oai, b.id)
    assert done.status == "cancelled" and done.cancelled_at >= done.cancelling_at
    assert 1 <= done.request_counts.completed < 40, "cancelled mid-way with partial results"
    out = [json.loads(x) for x in oai.files.content(done.output_file_id).text.splitlines()]
    assert len(out) == done.request_counts.completed
    assert len({o["custom_id"] for o in out}) == len(out)
    assert oai.batches.cancel(b.id).status == "cancelled"  # cancelling again is harmless
    with pytest.raises(openai.ConflictError):
        oai.batches.cancel(_completed_batch(oai))


def _completed_batch(oai) -> str:
    f = oai.files.create(file=("in.jsonl", io.BytesIO(jsonl([line("y")]))), purpose="batch")
    b = oai.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert _wait(oai, b.id).status == "completed"
    return b.id


def test_create_errors_and_isolation(server, oai):
    with server.client() as c:
        fid = upload_batch_file(c, [line("a", url="/v1/completions")]).json()["id"]
        r = c.post("/batches", json={"input_file_id": fid, "endpoint": "/v1/embeddings", "completion_window": "24h"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "endpoint"
        r = c.post("/batches", json={"input_file_id": fid, "endpoint": "/v1/completions", "completion_window": "1h"})
        assert r.status_code == 400 and "24h" in r.json()["error"]["message"]
        r = c.post("/batches", json={"input_file_id": "file-nope", "endpoint": "/v1/completions",
                                     "completion_window": "24h"})
        assert r.status_code == 404
        r = c.post("/batches", json={"endpoint": "/v1/completions", "completion_window": "24h"})
        assert r.status_code == 400
        # a line whose url is not the batch's endpoint fails the batch in validation
        b = c.post("/batches", json={"input_file_id": fid, "endpoint": "/v1/chat/completions",
                                     "completion_window": "24h"}).json()
        failed = wait_batch(c, b["id"])
        assert failed["status"] == "failed" and failed["failed_at"] is not None
        assert "does not match" in failed["errors"]["data"][0]["message"]
        # /v1/completions batches run too
        b = c.post("/batches", json={"input_file_id": fid, "endpoint": "/v1/completions",
                                     "completion_window": "24h"}).json()
        ok = wait_batch(c, b["id"])
        assert ok["status"] == "completed"
        assert read_lines(c, ok["output_file_id"])[0]["response"]["body"]["object"] == "text_completion"
        # bad upload: nothing stored, the line is named
        before = len(c.get("/files", params={"limit": 100}).json()["data"])
        r = upload_batch_file(c, [line("a"), line("a")])
        assert r.status_code == 400 and "line 2" in r.json()["error"]["message"]
        assert len(c.get("/files", params={"limit": 100}).json()["data"]) == before
        # a fine-tune file is not a batch input
        train = c.post("/files", files={"file": ("t.jsonl", jsonl([{"messages": [
            {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}]), "application/jsonl")},
            data={"purpose": "fine-tune"}).json()["id"]
        r = c.post("/batches", json={"input_file_id": train, "endpoint": "/v1/completions", "completion_window": "24h"})
        assert r.status_code == 400 and "purpose" in r.json()["error"]["message"]
    with server.client(new_org_key(server, "batch-neighbour")) as o:
        assert o.get(f"/batches/{b['id']}").status_code == 404
        assert o.post(f"/batches/{b['id']}/cancel").status_code == 404
        assert o.get("/batches").json()["data"] == []


def test_expired_batch_keeps_results_and_reports_the_rest(server, oai):
    import sqlite3

    rows = [line(f"e-{i}", f"Expire story {i}.", max_tokens=40) for i in range(40)]
    f = oai.files.create(file=("in.jsonl", io.BytesIO(jsonl(rows))), purpose="batch")
    b = oai.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    deadline = time.time() + 60
    while oai.batches.retrieve(b.id).request_counts.completed < 1 and time.time() < deadline:
        time.sleep(0.05)
    with sqlite3.connect(server.home / "tenfold.db") as db:  # the 24h window passes (in the database)
        db.execute("UPDATE batches SET expires_at = 0 WHERE id = ?", (b.id,))
    done = _wait(oai, b.id)
    assert done.status == "expired" and done.expired_at is not None and done.completed_at is None
    out = [json.loads(x) for x in oai.files.content(done.output_file_id).text.splitlines()]
    err = [json.loads(x) for x in oai.files.content(done.error_file_id).text.splitlines()]
    assert sorted(x["custom_id"] for x in out + err) == sorted(r["custom_id"] for r in rows)
    assert err and all(e["error"]["code"] == "batch_expired" and e["response"] is None for e in err)
    assert done.request_counts.completed == len(out) and done.request_counts.failed == len(err)


def test_cli_batches_create_wait_and_results(server, tmp_path):
    import subprocess
    import sys

    src = tmp_path / "req.jsonl"
    src.write_bytes(jsonl([line("cli-1"), line("cli-2", url="/v1/chat/completions", max_tokens=2)]))
    env = {"TENFOLD_API_KEY": server.api_key, "TENFOLD_BASE_URL": server.url, "TENFOLD_CONFIG_DIR": str(tmp_path),
           "PATH": "/usr/bin:/bin"}

    def tenfold(*args):
        return subprocess.run([sys.executable, "-m", "tenfold.cli.main", *args], env=env, capture_output=True,
                              text=True)

    p = tenfold("batches", "create", str(src), "--wait", "--json")
    assert p.returncode == 0, p.stderr + p.stdout
    b = json.loads(p.stdout)
    assert b["status"] == "completed" and b["request_counts"]["completed"] == 2
    out = tmp_path / "res.jsonl"
    p = tenfold("batches", "results", b["id"], "--output", str(out))
    assert p.returncode == 0 and sorted(json.loads(x)["custom_id"] for x in out.read_text().splitlines()) == \
        ["cli-1", "cli-2"]
    p = tenfold("batches", "list")
    assert p.returncode == 0 and b["id"] in p.stdout
