"""Nothing is silently ignored: every request field is honoured or refused with a 400 naming it, except
OpenAI's fields that need no server behaviour (``user``, ``store``, ``service_tier``, ``metadata``, …)."""

from __future__ import annotations

import pytest

from tests.api.helpers import TRAIN_ROWS, jsonl, upload

TINY = "tiny-random-llama"
CHAT = {"model": TINY, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
TEXT = {"model": TINY, "prompt": "Hi", "max_tokens": 2}


@pytest.mark.parametrize("path, extra, param", [
    ("/chat/completions", {"logit_bias": {"42": 5}}, "logit_bias"),
    ("/chat/completions", {"reasoning_effort": "high"}, "reasoning_effort"),
    ("/chat/completions", {"messages": [{"role": "user", "content": "Hi", "name": "bob"}]}, "messages.0.name"),
    ("/chat/completions", {"stream": True, "stream_options": {"include_usage": True, "x": 1}}, "stream_options.x"),
    ("/completions", {"echo": True}, "echo"),
    ("/completions", {"suffix": "the end"}, "suffix"),
    ("/completions", {"best_of": 3}, "best_of"),
    ("/completions", {"frobnicate": 1}, "frobnicate"),
])
def test_fields_that_are_not_honoured_are_refused_by_name(server, path, extra, param):
    body = {**(CHAT if path == "/chat/completions" else TEXT), **extra}
    with server.client() as c:
        r = c.post(path, json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and param.split(".")[-1] in err["message"], err
    assert err["type"] == "invalid_request_error"


def test_passthrough_fields_and_text_format_are_accepted(server):
    extra = {"user": "u-1", "store": False, "service_tier": "auto", "metadata": {"k": "v"},
             "safety_identifier": "s", "prompt_cache_key": "p", "response_format": {"type": "text"},
             "tool_choice": "none", "logit_bias": {}}
    with server.client() as c:
        r = c.post("/chat/completions", json={**CHAT, **extra})
        assert r.status_code == 200, r.text
        r = c.post("/completions", json={**TEXT, "best_of": 1, "echo": False, "user": "u"})
        assert r.status_code == 200, r.text


def test_job_metadata_is_stored_and_returned_and_unknown_integrations_are_refused(server):
    with server.client() as c:
        fid = upload(c, jsonl(TRAIN_ROWS)).json()["id"]
        body = {"model": TINY, "training_file": fid, "hyperparameters": {"n_epochs": 1}}
        r = c.post("/fine_tuning/jobs", json={**body, "integrations": [{"type": "slack", "slack": {}}]})
        assert r.status_code == 400 and r.json()["error"]["param"] == "integrations.0", r.text
        assert "integration type 'slack' is not supported" in r.json()["error"]["message"]  # wandb is (elsewhere)
        r = c.post("/fine_tuning/jobs", json={**body, "metadata": {"k" * 65: "v"}})
        assert r.status_code == 400 and r.json()["error"]["param"].startswith("metadata"), r.text
        job = c.post("/fine_tuning/jobs", json={**body, "metadata": {"team": "search", "run": "7"}}).json()
        assert job["metadata"] == {"team": "search", "run": "7"}
        assert c.get(f"/fine_tuning/jobs/{job['id']}").json()["metadata"] == {"team": "search", "run": "7"}
        c.post(f"/fine_tuning/jobs/{job['id']}/cancel")


def test_batch_lines_are_checked_like_requests(server):
    line = ('{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "%s", '
            '"messages": [{"role": "user", "content": "Hi"}], "logit_bias": {"1": 2}}}\n' % TINY)
    with server.client() as c:
        r = c.post("/files", files={"file": ("b.jsonl", line.encode(), "application/jsonl")}, data={"purpose": "batch"})
    assert r.status_code == 400 and "line 1" in r.json()["error"]["message"] and "logit_bias" in r.text
