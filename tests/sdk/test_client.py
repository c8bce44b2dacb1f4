"""The SDK against a real ``tenfold serve`` on loopback (the shared ``server`` fixture, tiny model)."""

from __future__ import annotations

import json
import socket

import pytest

from tenfold.sdk import (
    APIConnectionError, AuthenticationError, BadRequestError, ChatResult, ChatStream, ConflictError,
    NotFoundError, Tenfold, TenfoldError,
)

ROWS = [
    {"messages": [{"role": "user", "content": f"What is {a} plus {b}?"},
                  {"role": "assistant", "content": f"ANSWER: {a + b}"}]}
    for a in range(1, 5) for b in range(1, 4)
]
HYPER = {"n_epochs": 1, "batch_size": 4, "learning_rate": 5e-3, "lora_r": 4, "lora_alpha": 8, "checkpoint_every": 1}


def jsonl(rows: list[dict]) -> bytes:
    return ("\n".join(json.dumps(r) for r in rows) + "\n").encode()


@pytest.fixture(scope="module")
def client(server):
    with Tenfold(base_url=server.base_url, api_key=server.api_key, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def base_model(client) -> str:
    return client.health()["base_model"]


@pytest.fixture(scope="module")
def finished_job(client, base_model):
    """One small real training run, followed with ``jobs.wait``; returns (job, events seen)."""
    uploaded = client.files.upload(jsonl(ROWS), filename="sdk-train.jsonl")
    job = client.jobs.create(base_model, uploaded["id"], hyperparameters=HYPER, seed=3, suffix="sdk")
    assert job["status"] == "validating_files"
    seen: list[dict] = []
    final = client.jobs.wait(job["id"], on_event=seen.append, poll=0.2, timeout=300)
    return final, seen


def test_health_me_and_models(client, base_model):
    assert client.health()["status"] == "ok"
    me = client.me()
    assert me["is_admin"] is True and me["organization_id"].startswith("org")
    assert base_model in [m["id"] for m in client.models()["data"]]


def test_files_roundtrip(client):
    data = jsonl(ROWS[:2])
    uploaded = client.files.upload(data, filename="two.jsonl")
    assert uploaded["id"].startswith("file-") and uploaded["bytes"] == len(data)
    assert uploaded["filename"] == "two.jsonl" and uploaded["purpose"] == "fine-tune"
    assert uploaded["id"] in [f["id"] for f in client.files.list(limit=100)["data"]]
    assert client.files.get(uploaded["id"])["bytes"] == len(data)
    assert client.files.content(uploaded["id"]) == data
    assert client.files.delete(uploaded["id"])["deleted"] is True
    with pytest.raises(NotFoundError):
        client.files.get(uploaded["id"])


def test_upload_from_path(client, tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(jsonl(ROWS[:3]))
    assert client.files.upload(path)["filename"] == "rows.jsonl"
    with pytest.raises(FileNotFoundError):
        client.files.upload(tmp_path / "missing.jsonl")


def test_errors_are_typed_and_carry_the_server_message(client, server):
    with pytest.raises(BadRequestError, match="line 1") as info:
        client.files.upload(b'{"messages": []}\n', filename="bad.jsonl")
    assert info.value.status == 400 and info.value.type
    with pytest.raises(NotFoundError) as info:
        client.jobs.get("ftjob-doesnotexist")
    assert info.value.status == 404 and "ftjob-doesnotexist" in info.value.message
    with pytest.raises(AuthenticationError) as info:
        Tenfold(base_url=server.base_url, api_key="tf-wrong").files.list()
    assert info.value.status == 401


def test_connection_error_says_how_to_start_the_server():
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(APIConnectionError, match=f"not reachable at http://127.0.0.1:{port}.*tenfold serve") as info:
        Tenfold(base_url=f"http://127.0.0.1:{port}/v1", api_key="tf-x").models()
    assert isinstance(info.value, TenfoldError) and info.value.status is None


def test_chat_and_stream_agree(client, base_model):
    messages = [{"role": "user", "content": "Say hello."}]
    result = client.chat(base_model, messages, max_tokens=6, temperature=0.0)
    assert isinstance(result, ChatResult)
    assert result.completion_tokens == 6 or result.finish_reason == "stop"
    assert result.prompt_tokens > 0 and "cached_tokens" in result.usage["prompt_tokens_details"]
    assert result.checkpoint is None  # a base model has no checkpoint
    stream = client.chat(base_model, messages, max_tokens=6, temperature=0.0, stream=True)
    assert isinstance(stream, ChatStream)
    deltas = list(stream)
    assert "".join(deltas) == stream.content == result.content
    assert stream.completion_tokens == result.completion_tokens
    assert stream.prompt_tokens == result.prompt_tokens


def test_completions(client, base_model):
    result = client.completions(base_model, "The capital of France is", max_tokens=4)
    assert result.completion_tokens > 0 and isinstance(result.text, str)
    streamed = client.completions(base_model, "The capital of France is", max_tokens=4, stream=True)
    assert "".join(streamed) == result.text


def test_wait_reports_every_event_once_in_order(client, finished_job):
    job, seen = finished_job
    assert job["status"] == "succeeded" and job["fine_tuned_model"] == job["id"]
    ids = [e["id"] for e in seen]
    assert len(ids) == len(set(ids))
    everything = client.jobs.events(job["id"], limit=100, order="asc")["data"]
    assert ids == [e["id"] for e in everything]
    metrics = [e for e in seen if e["type"] == "metrics"]
    assert metrics and metrics[-1]["data"]["step"] == metrics[-1]["data"]["total_steps"]


def test_checkpoints_deploy_pin_and_undeploy(client, finished_job):
    job, _ = finished_job
    checkpoints = client.jobs.checkpoints(job["id"])["data"]
    steps = [c["step_number"] for c in checkpoints]
    assert steps == sorted(steps, reverse=True) and len(steps) >= 2
    first = f"{job['id']}/step-{steps[-1]}"

    dry = client.adapters.deploy(first, dry_run=True)
    assert dry["status"] == "dry_run"
    deployed = client.adapters.deploy(first)
    assert deployed["status"] == "deployed" and deployed["model"] == job["id"] and deployed["checkpoint"] == first
    assert client.adapters.get(job["id"])["source"] == first
    assert job["id"] in [a["model"] for a in client.adapters.list()["data"]]

    messages = [{"role": "user", "content": "What is 1 plus 1?"}]
    answer = client.chat(job["id"], messages, max_tokens=4, expected_checkpoint=f" {first} ")
    assert answer.checkpoint == first
    with pytest.raises(ConflictError, match=first):
        client.chat(job["id"], messages, max_tokens=4, expected_checkpoint="step-999999")

    final = client.adapters.deploy(job["id"], verify=False)
    assert final["checkpoint"] is None and final["replaced"] == first
    assert client.chat(job["id"], messages, max_tokens=2, expected_checkpoint="").checkpoint is None

    assert client.adapters.undeploy(job["id"])["deleted"] is True
    with pytest.raises(NotFoundError):
        client.adapters.get(job["id"])


def test_cancel_unknown_job_is_not_found(client):
    with pytest.raises(NotFoundError):
        client.jobs.cancel("ftjob-nope")
