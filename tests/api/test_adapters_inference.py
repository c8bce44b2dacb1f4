"""Deploy/undeploy and inference over the real server: checkpoint headers and pins, dry run, routing by
job id, organization isolation, usage rows for every request (streaming included)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.api.helpers import train_tiny, wait_job
from tests.conftest import new_org_key

MSG = [{"role": "user", "content": "What is 2 plus 2?"}]


@pytest.fixture(scope="module")
def trained(server):
    with server.client() as c:
        job = wait_job(c, train_tiny(c, checkpoint_every=2, n_epochs=4, learning_rate=3e-2)["id"])
        assert job["status"] == "succeeded"
        return job["id"]


def chat(c, model, headers=None, **kw):
    return c.post("/chat/completions", headers=headers or {},
                  json={"model": model, "messages": MSG, "max_tokens": 6, "temperature": 0, **kw})


def test_deploy_checkpoint_then_final_headers_and_pins(server, trained):
    with server.client() as c:
        dry = c.post("/adapters/plans", json={"model": f"{trained}/step-2"})
        assert dry.status_code == 200 and dry.json()["status"] == "dry_run"
        assert dry.json()["would_serve_as"] == trained and dry.json()["source"] == f"{trained}/step-2"
        assert c.get(f"/adapters/{trained}").status_code == 404  # the dry run changed nothing
        assert chat(c, trained).status_code == 404

        r = c.post("/adapters", json={"model": f"{trained}/step-2"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["checkpoint"] == f"{trained}/step-2" and body["verified"] and body["endpoint"].endswith("/v1")
        r = chat(c, trained)
        assert r.status_code == 200 and r.headers["x-tenfold-checkpoint"] == f"{trained}/step-2"
        assert chat(c, trained, {"X-Tenfold-Expected-Checkpoint": f"{trained}/step-2"}).status_code == 200
        assert chat(c, trained, {"X-Tenfold-Expected-Checkpoint": "step-2"}).status_code == 200
        pinned = chat(c, trained, {"X-Tenfold-Expected-Checkpoint": "step-4"})
        assert pinned.status_code == 409 and f"{trained}/step-2" in pinned.json()["error"]["message"]
        assert chat(c, trained, {"X-Tenfold-Expected-Checkpoint": ""}).status_code == 409

        step2 = chat(c, trained).json()["choices"][0]["message"]["content"]
        r = c.post("/adapters", json={"model": trained, "verify": False})
        assert r.status_code == 200 and r.json()["replaced"] == f"{trained}/step-2" and r.json()["checkpoint"] is None
        final = chat(c, trained)
        assert final.status_code == 200 and "x-tenfold-checkpoint" not in final.headers
        assert chat(c, trained, {"X-Tenfold-Expected-Checkpoint": ""}).status_code == 200
        assert chat(c, trained, {"X-Tenfold-Expected-Checkpoint": "step-2"}).status_code == 409
        base = chat(c, "tiny-random-llama").json()["choices"][0]["message"]["content"]
        assert final.json()["choices"][0]["message"]["content"] != base  # the adapter really applies

        models = [m["id"] for m in c.get("/models").json()["data"]]
        assert "tiny-random-llama" in models and trained in models
        assert trained in [a["model"] for a in c.get("/adapters").json()["data"]]


def test_streaming_headers_and_usage_rows(server, trained):
    with server.client() as c:
        c.post("/adapters", json={"model": f"{trained}/step-4"}).raise_for_status()
        before = len(c.get("/usage", params={"limit": 100}).json()["data"])
        with c.stream("POST", "/chat/completions", json={"model": trained, "messages": MSG, "max_tokens": 5,
                                                         "stream": True, "stream_options": {"include_usage": True}}) as r:
            assert r.status_code == 200 and r.headers["x-tenfold-checkpoint"] == f"{trained}/step-4"
            lines = [ln for ln in r.iter_lines() if ln.startswith("data: ")]
        assert lines[-1] == "data: [DONE]"
        chunks = [json.loads(ln[6:]) for ln in lines[:-1]]
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        usage = chunks[-1]["usage"]
        assert chunks[-1]["choices"] == [] and usage["completion_tokens"] == 5
        assert "cached_tokens" in usage["prompt_tokens_details"]
        with c.stream("POST", "/chat/completions", headers={"X-Tenfold-Expected-Checkpoint": "step-2"},
                      json={"model": trained, "messages": MSG, "stream": True}) as r:
            assert r.status_code == 409
        rows = c.get("/usage", params={"limit": 100}).json()["data"]
        assert len(rows) == before + 1  # the 409 did not bill
        row = rows[0]
        assert row["model"] == trained and row["checkpoint"] == f"{trained}/step-4"
        assert row["completion_tokens"] == 5 and row["prompt_tokens"] == usage["prompt_tokens"]
        assert row["cost_micro_usd"] >= 0 and row["api_key_id"].startswith("key-")


def test_completions_and_stop(server):
    with server.client() as c:
        r = c.post("/completions", json={"model": "tiny-random-llama", "prompt": "Hello", "max_tokens": 4,
                                         "temperature": 0})
        assert r.status_code == 200 and r.json()["object"] == "text_completion"
        assert r.json()["usage"]["completion_tokens"] == 4
        text = r.json()["choices"][0]["text"]
        word = text.strip().split()[0] if text.strip() else None
        if word:
            r2 = c.post("/completions", json={"model": "tiny-random-llama", "prompt": "Hello", "max_tokens": 4,
                                              "temperature": 0, "stop": [word]})
            assert word not in r2.json()["choices"][0]["text"] and r2.json()["choices"][0]["finish_reason"] == "stop"


def test_bad_inference_requests(server):
    with server.client() as c:
        r = c.post("/chat/completions", json={"model": "nope", "messages": MSG})
        assert r.status_code == 404 and r.json()["error"]["param"] == "model"
        r = c.post("/chat/completions", json={"model": "tiny-random-llama", "messages": []})
        assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
        r = c.post("/chat/completions", json={"model": "tiny-random-llama", "messages": MSG, "temperature": 5})
        assert r.status_code == 400
        r = c.post("/chat/completions", json={"model": "tiny-random-llama", "messages": MSG, "max_tokens": 10**6})
        assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
        assert c.get("/health").status_code in (200, 404)  # the server is still up


def test_other_organization_sees_nothing(server, trained):
    key = new_org_key(server, "intruder")
    with server.client(key) as o:
        assert o.get(f"/fine_tuning/jobs/{trained}").status_code == 404
        assert o.get(f"/fine_tuning/jobs/{trained}/checkpoints").status_code == 404
        assert o.post("/adapters", json={"model": trained}).status_code == 404
        assert chat(o, trained).status_code == 404
        assert o.delete(f"/adapters/{trained}").status_code == 404
        assert o.get("/fine_tuning/jobs").json()["data"] == []
        assert o.get("/usage").json()["data"] == []
        assert trained not in [m["id"] for m in o.get("/models").json()["data"]]
        assert o.post("/organizations", json={"name": "x"}).status_code == 403


def test_concurrent_requests_do_not_mix_adapters(server, trained):
    with server.client() as c:
        c.post("/adapters", json={"model": f"{trained}/step-2"}).raise_for_status()
        alone = {m: chat(c, m, max_tokens=8).json()["choices"][0]["message"]["content"]
                 for m in ("tiny-random-llama", trained)}

    def one(model):
        with server.client() as cc:
            return model, chat(cc, model, max_tokens=8).json()["choices"][0]["message"]["content"]

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(one, ["tiny-random-llama", trained] * 3))
    for model, text in results:
        assert text == alone[model], model


def test_undeploy(server, trained):
    with server.client() as c:
        c.post("/adapters", json={"model": trained, "verify": False}).raise_for_status()
        r = c.delete(f"/adapters/{trained}")
        assert r.json() == {"id": trained, "object": "adapter", "deleted": True}
        assert chat(c, trained).status_code == 404
        assert "tenfold deploy" in chat(c, trained).json()["error"]["message"]
        assert c.delete(f"/adapters/{trained}").status_code == 404
        assert httpx.get(server.url + "/health").json()["status"] == "ok"


def test_bad_prompts_are_400_not_500(server):
    with server.client() as c:
        for prompt in ([], "", [10**9]):
            r = c.post("/completions", json={"model": "tiny-random-llama", "prompt": prompt, "max_tokens": 2})
            assert r.status_code == 400, (prompt, r.text)
            assert r.json()["error"]["type"] == "invalid_request_error"
        r = c.post("/completions", json={"model": "tiny-random-llama", "prompt": ["a", "b"]})
        assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"


def test_prefix_cache_hits_are_reported_billed_and_per_organization(server):
    messages = [{"role": "system", "content": "You are a terse assistant for the prefix cache test. " * 3},
                {"role": "user", "content": "Say something."}]
    body = {"model": "tiny-random-llama", "messages": messages, "max_tokens": 3, "temperature": 0}
    with server.client() as c:
        first = c.post("/chat/completions", json=body).json()
        second = c.post("/chat/completions", json=body).json()
        assert second["usage"]["prompt_tokens_details"]["cached_tokens"] >= 32
        assert second["choices"][0]["message"]["content"] == first["choices"][0]["message"]["content"]
        row = c.get("/usage", params={"limit": 1}).json()["data"][0]
        assert row["request_id"] == second["id"]
        assert row["cached_tokens"] == second["usage"]["prompt_tokens_details"]["cached_tokens"]
    with server.client(new_org_key(server, "cache-neighbour")) as o:
        theirs = o.post("/chat/completions", json=body).json()
        assert theirs["usage"]["prompt_tokens_details"]["cached_tokens"] == 0


def test_client_that_disconnects_mid_stream_is_billed_once_for_what_was_generated(server):
    import time

    marker = "disconnect-test " * 4
    body = {"model": "tiny-random-llama", "messages": [{"role": "user", "content": marker}], "max_tokens": 400,
            "stream": True, "temperature": 0}
    with server.client() as c:
        with c.stream("POST", "/chat/completions", json=body) as r:
            first = next(ln for ln in r.iter_lines() if ln.startswith("data: "))
            request_id = json.loads(first[6:])["id"]
        # the connection is closed here, long before 400 tokens
        deadline = time.time() + 30
        rows = []
        while time.time() < deadline:
            rows = [u for u in c.get("/usage", params={"limit": 100}).json()["data"] if u["request_id"] == request_id]
            if rows:
                break
            time.sleep(0.2)
        assert len(rows) == 1, "exactly one usage row for the cut-off request"
        assert rows[0]["finish_reason"] == "abort" and rows[0]["completion_tokens"] < 400
        assert c.get("/health").status_code in (200, 404)
        assert c.post("/chat/completions", json={**body, "stream": False, "max_tokens": 2}).status_code == 200
