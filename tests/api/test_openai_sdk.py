"""Conformance with the official ``openai`` Python SDK as the client."""

from __future__ import annotations

import io

import openai
import pytest

from tests.api.helpers import TRAIN_ROWS, jsonl, wait_job


@pytest.fixture(scope="module")
def oai(server):
    return openai.OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0, timeout=120)


def test_models_and_chat(oai):
    assert "tiny-random-llama" in [m.id for m in oai.models.list()]
    r = oai.chat.completions.create(model="tiny-random-llama", messages=[{"role": "user", "content": "Hi"}],
                                    max_tokens=5, temperature=0, seed=1)
    assert r.object == "chat.completion" and r.choices[0].message.role == "assistant"
    assert r.usage.completion_tokens == 5 and r.usage.prompt_tokens > 0
    assert r.usage.prompt_tokens_details.cached_tokens >= 0
    assert r.choices[0].finish_reason == "length"


def test_streaming_with_usage(oai):
    stream = oai.chat.completions.create(model="tiny-random-llama", messages=[{"role": "user", "content": "Hi"}],
                                         max_tokens=4, temperature=0, stream=True,
                                         stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    full = oai.chat.completions.create(model="tiny-random-llama", messages=[{"role": "user", "content": "Hi"}],
                                       max_tokens=4, temperature=0)
    assert text == full.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == 4 and chunks[-1].choices == []


def test_seeded_sampling_is_reproducible(oai):
    kw = dict(model="tiny-random-llama", messages=[{"role": "user", "content": "Tell me"}], max_tokens=8,
              temperature=1.0, top_p=0.9)
    a = oai.chat.completions.create(seed=123, **kw).choices[0].message.content
    b = oai.chat.completions.create(seed=123, **kw).choices[0].message.content
    assert a == b


def test_legacy_completions(oai):
    r = oai.completions.create(model="tiny-random-llama", prompt="Once upon", max_tokens=3, temperature=0)
    assert r.object == "text_completion" and r.usage.completion_tokens == 3


def test_errors_map_to_sdk_exceptions(oai, server):
    with pytest.raises(openai.NotFoundError):
        oai.chat.completions.create(model="missing", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError):
        oai.chat.completions.create(model="tiny-random-llama", messages=[])
    bad = openai.OpenAI(base_url=server.base_url, api_key="tf-bad", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_files_and_fine_tuning_through_sdk(oai):
    f = oai.files.create(file=("train.jsonl", io.BytesIO(jsonl(TRAIN_ROWS))), purpose="fine-tune")
    assert f.id.startswith("file-") and f.purpose == "fine-tune"
    with pytest.raises(openai.BadRequestError) as e:
        oai.files.create(file=("bad.jsonl", io.BytesIO(b'{"messages": []}\n')), purpose="fine-tune")
    assert "line 1" in str(e.value)
    job = oai.fine_tuning.jobs.create(model="tiny-random-llama", training_file=f.id, seed=3,
                                      method={"type": "supervised", "supervised": {"hyperparameters": {
                                          "n_epochs": 1, "batch_size": 4}}},
                                      extra_body={"hyperparameters": {"lora_r": 4, "checkpoint_every": 1}})
    assert job.status == "validating_files" and job.hyperparameters.n_epochs == 1  # an OpenAI status too
    import httpx

    with httpx.Client(base_url=str(oai.base_url), headers={"Authorization": f"Bearer {oai.api_key}"}) as c:
        final = wait_job(c, job.id)
        assert final["status"] == "succeeded"
        got = oai.fine_tuning.jobs.retrieve(job.id)
        assert got.fine_tuned_model == job.id and got.trained_tokens > 0
        events = oai.fine_tuning.jobs.list_events(job.id, limit=50)
        assert any(e.type == "metrics" for e in events.data)
        cks = oai.fine_tuning.jobs.checkpoints.list(job.id)
        assert [c.step_number for c in cks.data] == [3, 2, 1]
        assert job.id in [j.id for j in oai.fine_tuning.jobs.list(limit=50).data]
        msg = [{"role": "user", "content": "x"}]
        with pytest.raises(openai.NotFoundError):
            oai.chat.completions.create(model=job.id, messages=msg, max_tokens=2)
        c.post("/adapters", json={"model": f"{job.id}/step-2"}).raise_for_status()
    raw = oai.chat.completions.with_raw_response.create(model=job.id, messages=msg, max_tokens=2)
    assert raw.headers.get("X-Tenfold-Checkpoint") == f"{job.id}/step-2"
    assert raw.parse().usage.completion_tokens <= 2
    with pytest.raises(openai.ConflictError) as e:
        oai.chat.completions.create(model=job.id, messages=msg, max_tokens=2,
                                    extra_headers={"X-Tenfold-Expected-Checkpoint": "step-3"})
    assert f"{job.id}/step-2" in str(e.value)
    stream = oai.chat.completions.with_raw_response.create(model=job.id, messages=msg, max_tokens=2, stream=True)
    assert stream.headers.get("X-Tenfold-Checkpoint") == f"{job.id}/step-2"
    assert list(stream.parse())
