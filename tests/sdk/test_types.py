"""The response models of ``tenfold.types`` against what a real server answers today.

Each body is fetched with plain httpx (no SDK) and must validate into its model, declare every field the
server sends (nothing lands in ``model_extra``), and dump back to exactly the server's JSON
(``model_dump(mode="json", exclude_unset=True)``). The server will use these models as FastAPI response
models, so a drift on either side fails here.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from pydantic import BaseModel

from tenfold.types import (
    Adapter,
    AdapterDeployPlan,
    ApiKey,
    Batch,
    BatchOutputLine,
    ChatCompletion,
    ChatCompletionChunk,
    Completion,
    Deleted,
    ErrorResponse,
    Evaluation,
    FileObject,
    FineTuningJob,
    Health,
    JobCheckpoint,
    JobEstimate,
    JobEvent,
    JobMetrics,
    ListResponse,
    Model,
    Organization,
    Principal,
    SpendLimit,
    UsageRecord,
    UsageSummary,
)
from tests.api.helpers import TRAIN_ROWS, jsonl, train_tiny, upload, wait_job
from tests.conftest import new_org_key


def undeclared(value: Any, where: str = "") -> list[str]:
    """Paths of fields the server sent that no model declares (``model_extra``), recursively."""
    found: list[str] = []
    if isinstance(value, BaseModel):
        found += [f"{where}.{k}" for k in (value.model_extra or {})]
        for name in type(value).model_fields:
            found += undeclared(getattr(value, name), f"{where}.{name}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += undeclared(item, f"{where}[{i}]")
    return found


def roundtrip(cls: Any, body: Any) -> Any:
    model = cls.model_validate(body)
    assert undeclared(model) == [], f"{cls.__name__} does not declare {undeclared(model)}"
    assert model.model_dump(mode="json", exclude_unset=True) == body
    return model


def sse_payloads(text: str) -> list[dict]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]


@pytest.fixture(scope="module")
def http(server):
    with server.client() as c:
        yield c


@pytest.fixture(scope="module")
def job(http) -> dict:
    """A tiny job trained to the end (6 steps, checkpoints at 2, 4, 6)."""
    created = train_tiny(http)
    roundtrip(FineTuningJob, created)
    return wait_job(http, created["id"])


def test_files(http):
    body = upload(http, jsonl(TRAIN_ROWS), name="types.jsonl").json()
    f = roundtrip(FileObject, body)
    assert f.n_tokens and f.tokenizer
    roundtrip(FileObject, http.get(f"/files/{f.id}").json())
    roundtrip(ListResponse[FileObject], http.get("/files", params={"limit": 3}).json())
    batch_file = http.post("/files", data={"purpose": "batch"}, files={"file": ("b.jsonl", jsonl([
        {"custom_id": "a", "method": "POST", "url": "/v1/completions",
         "body": {"model": "tiny-random-llama", "prompt": "hi", "max_tokens": 1}}]), "application/jsonl")}).json()
    assert roundtrip(FileObject, batch_file).n_tokens is None
    roundtrip(Deleted, http.delete(f"/files/{f.id}").json())


def test_jobs_events_checkpoints_metrics(http, job):
    done = roundtrip(FineTuningJob, job)
    assert done.status == "succeeded" and done.checkpoints and done.error is None
    roundtrip(ListResponse[FineTuningJob], http.get("/fine_tuning/jobs", params={"limit": 5}).json())
    events = roundtrip(ListResponse[JobEvent], http.get(f"/fine_tuning/jobs/{done.id}/events",
                                                       params={"limit": 100}).json())
    assert {e.type for e in events.data} == {"message", "metrics"}
    checkpoints = roundtrip(ListResponse[JobCheckpoint], http.get(f"/fine_tuning/jobs/{done.id}/checkpoints").json())
    assert checkpoints.data
    roundtrip(JobMetrics, http.get(f"/fine_tuning/jobs/{done.id}/metrics").json())


def test_estimate_cancel_and_evaluation(http, job):
    fid = upload(http, jsonl(TRAIN_ROWS)).json()["id"]
    body = {"model": "tiny-random-llama", "training_file": fid, "hyperparameters": {"n_epochs": 50, "batch_size": 4}}
    roundtrip(JobEstimate, http.post("/fine_tuning/jobs", json={**body, "dry_run": True}).json())
    created = http.post("/fine_tuning/jobs", json={**body, "method": {"type": "supervised"}}).json()
    cancelled = roundtrip(FineTuningJob, http.post(f"/fine_tuning/jobs/{created['id']}/cancel").json())
    assert cancelled.status == "cancelled"
    result = http.post("/fine_tuning/evaluations", json={"models": ["tiny-random-llama", job["id"]],
                                                         "examples": TRAIN_ROWS[:2] + [{"prompt": "What is 1 plus 1?",
                                                                                         "expected": "ANSWER: 2"}],
                                                         "max_new_tokens": 3}).json()
    assert roundtrip(Evaluation, result).data[1].n_with_expected == 3  # two chats + one prompt/expected


def test_adapters_and_models(http, job):
    target = job["checkpoints"][0]
    dry = roundtrip(AdapterDeployPlan, http.post("/adapters/plans", json={"model": target}).json())
    assert dry.status == "dry_run" and dry.message
    deployed = roundtrip(Adapter, http.post("/adapters", json={"model": target}).json())
    assert deployed.checkpoint == target
    roundtrip(Adapter, http.get(f"/adapters/{job['id']}").json())
    roundtrip(ListResponse[Adapter], http.get("/adapters").json())
    roundtrip(ListResponse[Model], http.get("/models").json())
    assert roundtrip(Model, http.get(f"/models/{job['id']}").json()).checkpoint == target
    again = roundtrip(AdapterDeployPlan, http.post("/adapters/plans", json={"model": job["id"]}).json())
    assert again.would_replace == target
    roundtrip(Deleted, http.delete(f"/adapters/{job['id']}").json())


def test_chat_completions_and_chunks(http):
    body = {"model": "tiny-random-llama", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3,
            "logprobs": True, "top_logprobs": 2, "n": 2}
    answer = roundtrip(ChatCompletion, http.post("/chat/completions", json=body).json())
    assert answer.choices[1].logprobs.content and answer.usage.prompt_tokens_details is not None
    plain = roundtrip(ChatCompletion, http.post("/chat/completions", json={**body, "logprobs": False, "top_logprobs": None, "n": 1}).json())
    assert plain.choices[0].logprobs is None
    streamed = http.post("/chat/completions", json={**body, "stream": True, "stream_options": {"include_usage": True}})
    chunks = [roundtrip(ChatCompletionChunk, p) for p in sse_payloads(streamed.text)]
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[-1].usage is not None
    assert any(c.choices and c.choices[0].logprobs for c in chunks)
    bare = http.post("/chat/completions", json={**body, "n": 1, "logprobs": False, "top_logprobs": None, "stream": True})
    assert all(roundtrip(ChatCompletionChunk, p).usage is None for p in sse_payloads(bare.text))


def test_completions_and_chunks(http):
    body = {"model": "tiny-random-llama", "prompt": "Hello", "max_tokens": 3, "logprobs": 2}
    text = roundtrip(Completion, http.post("/completions", json=body).json())
    assert text.choices[0].logprobs.text_offset
    streamed = http.post("/completions", json={**body, "stream": True, "stream_options": {"include_usage": True}})
    chunks = [roundtrip(Completion, p) for p in sse_payloads(streamed.text)]
    assert chunks[-1].usage.completion_tokens == 3


def test_batches_and_result_lines(http):
    rows = [{"custom_id": "ok", "method": "POST", "url": "/v1/chat/completions",
             "body": {"model": "tiny-random-llama", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}},
            {"custom_id": "bad", "method": "POST", "url": "/v1/chat/completions",
             "body": {"model": "no-such-model", "messages": [{"role": "user", "content": "Hi"}]}}]
    fid = http.post("/files", data={"purpose": "batch"},
                    files={"file": ("b.jsonl", jsonl(rows), "application/jsonl")}).json()["id"]
    created = roundtrip(Batch, http.post("/batches", json={"input_file_id": fid, "endpoint": "/v1/chat/completions",
                                                           "completion_window": "24h"}).json())
    deadline = time.time() + 120
    while (body := http.get(f"/batches/{created.id}").json())["status"] not in ("completed", "failed"):
        assert time.time() < deadline, body
        time.sleep(0.1)
    done = roundtrip(Batch, body)
    assert done.status == "completed" and done.usage.output_tokens > 0
    roundtrip(ListResponse[Batch], http.get("/batches", params={"limit": 3}).json())
    for file_id in (done.output_file_id, done.error_file_id):
        assert roundtrip(FileObject, http.get(f"/files/{file_id}").json()).purpose.startswith("batch_")
        for line in http.get(f"/files/{file_id}/content").text.splitlines():
            roundtrip(BatchOutputLine, json.loads(line))


def test_usage_and_spend_limit(http):
    http.post("/completions", json={"model": "tiny-random-llama", "prompt": "Hi", "max_tokens": 1})
    roundtrip(ListResponse[UsageRecord], http.get("/usage", params={"limit": 20}).json())
    now = int(time.time())
    plain = roundtrip(UsageSummary, http.get("/usage", params={"start_time": now - 7200, "end_time": now + 60,
                                                               "bucket_width": "1h"}).json())
    assert plain.totals.num_model_requests >= 1
    groups = "model,adapter,checkpoint,api_key_id,deployment_id,usage_type,batch_id,base_model"
    grouped = roundtrip(UsageSummary, http.get("/usage", params={"start_time": now - 7200, "group_by": groups}).json())
    assert any(b.results for b in grouped.data)
    org = roundtrip(Organization, http.post("/organizations", json={"name": "types"}).json())
    roundtrip(SpendLimit, http.put(f"/organizations/{org.id}/spend_limit", json={"monthly_spend_limit_usd": "3"}).json())
    roundtrip(SpendLimit, http.get(f"/organizations/{org.id}/spend_limit").json())
    roundtrip(SpendLimit, http.put(f"/organizations/{org.id}/spend_limit",
                                   json={"monthly_spend_limit_usd": None}).json())


def test_admin_identity_and_errors(http, server):
    org = http.post("/organizations", json={"name": "types-keys"}).json()
    key = roundtrip(ApiKey, http.post("/api_keys", json={"organization_id": org["id"], "name": "k"}).json())
    assert key.key and key.key.startswith("tf-")
    roundtrip(Principal, http.get("/me").json())
    roundtrip(Health, http.get(server.url + "/health").json())
    for response in (http.get("/files/file-nope"), http.post("/chat/completions", json={"model": "x"}),
                     http.get("/me", headers={"Authorization": "Bearer tf-wrong"})):
        assert response.status_code in (400, 401, 404)
        roundtrip(ErrorResponse, response.json())
    with server.client(new_org_key(server, "types-member")) as member:
        roundtrip(ErrorResponse, member.post("/organizations", json={"name": "no"}).json())
