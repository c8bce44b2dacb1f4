"""Files API against a real server: validation with line numbers, nothing stored on rejection,
list/get/content/delete, and organization isolation."""

from __future__ import annotations

import json

from tests.api.helpers import TRAIN_ROWS, jsonl, upload


def test_upload_list_get_content_delete(server):
    with server.client() as c:
        data = jsonl(TRAIN_ROWS)
        r = upload(c, data, "train.jsonl")
        assert r.status_code == 200, r.text
        f = r.json()
        assert f["id"].startswith("file-") and f["object"] == "file" and f["purpose"] == "fine-tune"
        assert f["bytes"] == len(data) and f["filename"] == "train.jsonl"
        assert f["id"] in [x["id"] for x in c.get("/files").json()["data"]]
        assert c.get(f"/files/{f['id']}").json()["bytes"] == len(data)
        assert c.get(f"/files/{f['id']}/content").content == data
        d = c.delete(f"/files/{f['id']}")
        assert d.json() == {"id": f["id"], "object": "file", "deleted": True}
        assert c.get(f"/files/{f['id']}").status_code == 404


def test_invalid_file_rejected_with_line_and_nothing_stored(server):
    with server.client() as c:
        before = c.get("/files", params={"limit": 100}).json()["data"]
        stored = sorted(p.name for p in (server.home / "artifacts" / "files").iterdir())
        bad = jsonl(TRAIN_ROWS[:2]) + b'{"messages": "nope"}\n'
        r = upload(c, bad)
        assert r.status_code == 400
        err = r.json()["error"]
        assert "line 3" in err["message"] and "messages" in err["message"]
        assert err["type"] == "invalid_request_error" and err["param"] == "file"
        r2 = upload(c, b'{"prompt": "hi", "completion": "there"}\nnot json\n')
        assert r2.status_code == 400 and "line 2" in r2.json()["error"]["message"]
        assert c.get("/files", params={"limit": 100}).json()["data"] == before
        assert sorted(p.name for p in (server.home / "artifacts" / "files").iterdir()) == stored


def test_bad_purpose_and_missing_fields_are_400(server):
    with server.client() as c:
        r = c.post("/files", files={"file": ("a.jsonl", jsonl(TRAIN_ROWS), "application/jsonl")},
                   data={"purpose": "vision"})
        assert r.status_code == 400 and "purpose" in r.json()["error"]["message"]
        r = c.post("/files", data={"purpose": "fine-tune"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "file"


def test_auth_required_and_bad_key(server):
    import httpx

    r = httpx.get(server.base_url + "/files")
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
    r = httpx.get(server.base_url + "/files", headers={"Authorization": "Bearer tf-wrong"})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"


def test_too_large_upload_is_413_and_nothing_stored(tmp_path, model_cache):
    from tests.conftest import start_server, stop_server

    small = start_server(tmp_path / "home", model_cache, extra_env={"TENFOLD_MAX_UPLOAD_BYTES": "200"})
    try:
        with small.client() as c:
            r = upload(c, jsonl(TRAIN_ROWS))
            assert r.status_code == 413
            assert "200 byte limit" in r.json()["error"]["message"]
            assert c.get("/files").json()["data"] == []
            assert upload(c, jsonl(TRAIN_ROWS[:1])).status_code == 200
        assert [p.name for p in (small.home / "artifacts" / "files").iterdir() if p.name.startswith(".")] == []
    finally:
        stop_server(small)


def test_upload_counts_tokens_as_training_will(server):
    """A fine-tune file's ``n_tokens`` (counted on upload with the default base model's tokenizer) equals the
    tokens per epoch that a job on that model trains (the dry run's count), for chats and preference pairs."""
    prefs = [{"prompt": f"What is {a} plus 1?", "chosen": f"ANSWER: {a + 1}", "rejected": f"It is {a + 2}."}
             for a in range(6)]
    with server.client() as c:
        for rows, method in ((TRAIN_ROWS, None), (prefs, {"type": "dpo"})):
            f = upload(c, jsonl(rows)).json()
            assert f["tokenizer"] == "tiny-random-llama" and f["n_examples"] == len(rows)
            assert f["n_tokens"] > f["max_example_tokens"] > 0
            assert c.get(f"/files/{f['id']}").json()["n_tokens"] == f["n_tokens"]
            assert c.get("/files").json()["data"][0]["n_tokens"] == f["n_tokens"]
            est = c.post("/fine_tuning/jobs", json={"model": "tiny-random-llama", "training_file": f["id"],
                                                    "dry_run": True, "hyperparameters": {"n_epochs": 1},
                                                    **({"method": method} if method else {})}).json()
            assert est["tokens_per_epoch"] == f["n_tokens"], (method, est)
        line = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
                "body": {"model": "tiny-random-llama", "messages": [{"role": "user", "content": "hi"}]}}
        batch = c.post("/files", files={"file": ("b.jsonl", jsonl([line]), "application/jsonl")},
                       data={"purpose": "batch"}).json()
        assert batch["n_tokens"] is None and batch["tokenizer"] is None


def test_every_dataset_format_is_named_counted_and_fits_its_method(server):
    """Each accepted format (TRL's standard and conversational types, OpenAI's chat and preference formats)
    uploads with its own ``format`` value and a token count equal to what its method trains per epoch; a line
    in no supported format is refused with its number and the nearest format."""
    from tests.training.test_dataset_formats import PREFERENCE_LINES, SFT_LINES

    with server.client() as c:
        for fmt, line in {**SFT_LINES, **PREFERENCE_LINES}.items():
            rows = [json.loads(json.dumps(line).replace("Sky", f"Sky {i}")) for i in range(4)]
            r = upload(c, jsonl(rows), f"{fmt}.jsonl")
            assert r.status_code == 200, (fmt, r.text)
            f = r.json()
            assert f["format"] == fmt and f["n_examples"] == 4 and f["n_tokens"] > 0, f
            method = "dpo" if fmt in PREFERENCE_LINES else "supervised"
            body = {"model": "tiny-random-llama", "training_file": f["id"], "dry_run": True,
                    "hyperparameters": {"n_epochs": 1}}
            est = c.post("/fine_tuning/jobs", json={**body, "method": {"type": method}})
            assert est.status_code == 200 and est.json()["tokens_per_epoch"] == f["n_tokens"], (fmt, est.text)
            other = c.post("/fine_tuning/jobs", json={**body, "method": {"type": "supervised" if method == "dpo"
                                                                          else "dpo"}})
            assert other.status_code == 400 and other.json()["error"]["param"] == "training_file", (fmt, other.text)
        r = upload(c, jsonl(TRAIN_ROWS[:2]) + b'{"instruction": "Add", "input": "2+2", "output": "4"}\n')
        assert r.status_code == 400
        msg = r.json()["error"]["message"]
        assert "line 3: no supported format has the keys" in msg and "'prompt'/'completion'" in msg
