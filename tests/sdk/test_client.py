"""The SDK's main flows against a real ``tenfold serve`` (shared ``server`` fixture, tiny model): every call
returns a ``tenfold.types`` model."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

import tenfold
from tenfold.sdk import ConflictError, NotFoundError, Stream, Tenfold
from tenfold.types import (
    AdapterDeployPlan,
    ApiKey,
    ChatCompletion,
    ChatCompletionChunk,
    Completion,
    Deleted,
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
from tests.sdk.conftest import HYPER, ROWS, jsonl


def test_import_tenfold_exposes_the_clients_lazily():
    assert tenfold.Tenfold is Tenfold
    assert tenfold.AsyncTenfold.__name__ == "AsyncTenfold" and tenfold.ConflictError is ConflictError
    import tenfold.sdk as sdk

    assert {name for name in sdk.__all__ if name[0].isupper()} <= set(dir(tenfold))
    with pytest.raises(AttributeError):
        tenfold.NoSuchThing  # noqa: B018


def test_import_tenfold_is_light_and_the_sdk_imports_no_server_code():
    script = (
        "import sys, tenfold\n"
        "assert not [m for m in sys.modules if m.startswith(('httpx', 'pydantic', 'tenfold.')) and m != 'tenfold.version'], "
        "sys.modules\n"
        "tenfold.Tenfold\n"
        "server = [m for m in sys.modules if m.startswith('tenfold.') and not m.startswith(('tenfold.sdk', "
        "'tenfold.types', 'tenfold.version'))]\n"
        "assert not server and 'torch' not in sys.modules and 'fastapi' not in sys.modules, server\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_health_me_and_models(client, base_model):
    health = client.health()
    assert isinstance(health, Health) and health.status == "ok"
    me = client.me()
    assert isinstance(me, Principal) and me.is_admin is True and me.organization_id.startswith("org")
    models = client.models.list()
    assert isinstance(models, ListResponse) and all(isinstance(m, Model) for m in models.data)
    base = client.models.retrieve(base_model)
    assert base.id == base_model and base.parent is None
    with pytest.raises(NotFoundError):
        client.models.retrieve("no-such-model")


def test_files_roundtrip(client, tmp_path):
    data = jsonl(ROWS[:2])
    uploaded = client.files.create(file=("two.jsonl", data), purpose="fine-tune")
    assert isinstance(uploaded, FileObject) and uploaded.id.startswith("file-")
    assert (uploaded.bytes, uploaded.filename, uploaded.purpose, uploaded.n_examples) == (len(data), "two.jsonl",
                                                                                          "fine-tune", 2)
    assert uploaded.n_tokens and uploaded.n_tokens > 0 and uploaded.format == "messages"
    page = client.files.list(limit=100, purpose="fine-tune")
    assert uploaded.id in [f.id for f in page.data] and all(f.purpose == "fine-tune" for f in page.data)
    assert client.files.retrieve(uploaded.id) == uploaded
    assert client.files.content(uploaded.id) == data
    raw = client.files.with_raw_response.content(uploaded.id)
    assert raw.parse() == raw.content == data and "two.jsonl" in raw.headers["content-disposition"]
    deleted = client.files.delete(uploaded.id)
    assert isinstance(deleted, Deleted) and deleted.deleted is True and deleted.id == uploaded.id
    with pytest.raises(NotFoundError):
        client.files.retrieve(uploaded.id)

    path = tmp_path / "rows.jsonl"
    path.write_bytes(jsonl(ROWS[:3]))
    assert client.files.create(file=path, purpose="fine-tune").filename == "rows.jsonl"
    with path.open("rb") as fh:
        assert client.files.create(file=fh, purpose="fine-tune").n_examples == 3
    assert client.files.create(file=jsonl(ROWS[:1]), purpose="fine-tune").filename == "upload.jsonl"
    with pytest.raises(FileNotFoundError):
        client.files.create(file=tmp_path / "missing.jsonl", purpose="fine-tune")


def test_estimate_creates_nothing(client, base_model):
    uploaded = client.files.create(file=("est.jsonl", jsonl(ROWS)), purpose="fine-tune")
    before = [j.id for j in client.fine_tuning.jobs.list(limit=100).data]
    est = client.fine_tuning.jobs.estimate(model=base_model, training_file=uploaded.id, hyperparameters=HYPER,
                                           method="sft")
    assert isinstance(est, JobEstimate)
    assert (est.n_examples, est.n_epochs, est.total_steps) == (len(ROWS), 1, 3)
    assert est.tokens_per_epoch == uploaded.n_tokens and est.estimated_cost_micro_usd >= 0
    assert [j.id for j in client.fine_tuning.jobs.list(limit=100).data] == before


def test_wait_reports_every_event_once_in_order(client, finished_job):
    job, events, polls = finished_job
    assert isinstance(job, FineTuningJob) and job.status == "succeeded" and job.done
    assert job.fine_tuned_model == job.id and job.has_final_adapter and job.suffix == "sdk"
    assert job.method.type == "supervised" and job.hyperparameters["lora_r"] == 4
    assert polls and all(isinstance(p, FineTuningJob) for p in polls) and polls[-1].status == "succeeded"
    ids = [e.id for e in events]
    assert len(ids) == len(set(ids)) and all(isinstance(e, JobEvent) for e in events)
    everything = client.fine_tuning.jobs.list_events(job.id, limit=100, order="asc").data
    assert ids == [e.id for e in everything]
    newest_first = client.fine_tuning.jobs.list_events(job.id, limit=100).data  # the server's default order
    assert [e.id for e in newest_first] == ids[::-1]
    metrics = [e for e in events if e.type == "metrics"]
    assert metrics and metrics[-1].data["step"] == metrics[-1].data["total_steps"] == 3
    assert job.id in [j.id for j in client.fine_tuning.jobs.list(limit=100).data]
    assert client.fine_tuning.jobs.retrieve(job.id) == job


def test_metrics_checkpoints_and_evaluation(client, finished_job, base_model):
    job, _, _ = finished_job
    series = client.fine_tuning.jobs.metrics(job.id)
    assert isinstance(series, JobMetrics) and series.job_id == job.id
    assert [m.step for m in series.data] == [1, 2, 3] and all(m.train_loss is not None for m in series.data)
    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id)
    assert all(isinstance(c, JobCheckpoint) for c in checkpoints.data)
    assert [c.step_number for c in checkpoints.data] == [3, 2, 1]
    assert checkpoints.data[0].metrics.step == 3 and checkpoints.data[0].metrics.train_loss is not None
    page = client.fine_tuning.jobs.checkpoints.list(job.id, limit=1, after=f"{job.id}/step-3")
    assert [c.id for c in page.data] == [f"{job.id}/step-2"] and page.has_more
    raw = client.fine_tuning.with_raw_response.jobs.checkpoints.list(job.id)  # raw mode reaches nested resources
    assert raw.status_code == 200 and raw.headers["content-type"] == "application/json"
    assert raw.parse() == checkpoints and raw.json()["data"][0]["id"] == f"{job.id}/step-3"
    assert client.fine_tuning.jobs.with_raw_response.wait(job.id, poll=0.1, timeout=30) == job  # helpers parse

    result = client.fine_tuning.evaluations.create(models=[base_model, job.id], examples=ROWS[:2], max_new_tokens=4)
    assert isinstance(result, Evaluation) and [r.model for r in result.data] == [base_model, job.id]
    assert result.data[1].adapter is True and result.data[1].loss is not None


def test_checkpoints_deploy_pin_and_undeploy(client, finished_job):
    job, _, _ = finished_job
    first = f"{job.id}/step-1"
    dry = client.adapters.plan(model=first)
    assert isinstance(dry, AdapterDeployPlan) and dry.status == "dry_run" and dry.message
    assert dry.would_serve_as == first.split("/")[0]
    deployed = client.adapters.create(model=first)
    assert (deployed.status, deployed.model, deployed.checkpoint) == ("deployed", job.id, first)
    assert client.adapters.retrieve(job.id).source == first
    assert job.id in [a.model for a in client.adapters.list().data]
    assert client.models.retrieve(job.id).checkpoint == first

    messages = [{"role": "user", "content": "What is 1 plus 1?"}]
    raw = client.chat.completions.with_raw_response.create(model=job.id, messages=messages, max_tokens=4,
                                                           expected_checkpoint=f" {first} ")
    assert raw.status_code == 200 and raw.headers["X-Tenfold-Checkpoint"] == first == raw.checkpoint
    assert isinstance(raw.parse(), ChatCompletion) and raw.parse() is raw.parse()
    with pytest.raises(ConflictError, match=first) as info:
        client.chat.completions.create(model=job.id, messages=messages, max_tokens=4, expected_checkpoint="step-9999")
    assert info.value.code == "checkpoint_mismatch"

    final = client.adapters.create(model=job.id, verify=False)
    assert final.checkpoint is None and final.replaced == first
    raw = client.chat.completions.with_raw_response.create(model=job.id, messages=messages, max_tokens=2,
                                                           expected_checkpoint="")
    assert raw.checkpoint is None and "X-Tenfold-Checkpoint" not in raw.headers

    deleted = client.adapters.delete(job.id)
    assert isinstance(deleted, Deleted) and deleted.deleted is True
    with pytest.raises(NotFoundError):
        client.adapters.retrieve(job.id)


def test_chat_and_completions(client, base_model):
    messages = [{"role": "user", "content": "Say hello."}]
    answer = client.chat.completions.create(model=base_model, messages=messages, max_tokens=6, temperature=0.0)
    assert isinstance(answer, ChatCompletion) and answer.choices[0].message.role == "assistant"
    assert answer.usage.completion_tokens == 6 or answer.choices[0].finish_reason == "stop"
    assert answer.usage.prompt_tokens > 0 and answer.usage.prompt_tokens_details is not None
    stream = client.chat.completions.create(model=base_model, messages=messages, max_tokens=6, temperature=0.0,
                                            stream=True, stream_options={"include_usage": True})
    assert isinstance(stream, Stream) and stream.checkpoint is None
    with stream:
        chunks = list(stream)
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks) and stream.response.is_closed
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == answer.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == answer.usage.completion_tokens

    two = client.chat.completions.create(model=base_model, messages=messages, max_tokens=3, n=2, seed=1,
                                         temperature=1.0, logprobs=True, top_logprobs=2)
    assert [c.index for c in two.choices] == [0, 1]
    assert len(two.choices[0].logprobs.content[0].top_logprobs) == 2

    text = client.completions.create(model=base_model, prompt="The capital of France is", max_tokens=4, logprobs=1,
                                     temperature=0)
    assert isinstance(text, Completion) and text.usage.completion_tokens > 0
    assert len(text.choices[0].logprobs.tokens) == text.usage.completion_tokens
    streamed = client.completions.create(model=base_model, prompt="The capital of France is", max_tokens=4,
                                         temperature=0, stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == text.choices[0].text
    extra = client.completions.create(model=base_model, prompt="Hi", max_tokens=3, extra_body={"ignore_eos": True})
    assert extra.usage.completion_tokens == 3


def test_usage_and_spend_limit(client, base_model):
    client.chat.completions.create(model=base_model, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    records = client.usage.list(limit=5)
    assert all(isinstance(r, UsageRecord) for r in records.data) and records.data[0].model == base_model
    now = int(time.time())
    summary = client.usage.summary(now - 3600, now + 60, bucket_width="1h", group_by=["model"],
                                   models=[base_model])
    assert isinstance(summary, UsageSummary) and summary.totals.num_model_requests >= 1
    results = [r for b in summary.data for r in b.results]
    assert results and {r.model for r in results} == {base_model}
    assert sum(r.cost_micro_usd for r in results) == summary.totals.cost_micro_usd
    csv = client.usage.export(now - 3600, now + 60)
    assert csv.splitlines()[0].startswith("email,start_time,end_time") and len(csv.splitlines()) > 1

    org = client.organizations.create(name="sdk-limits")
    assert isinstance(org, Organization)
    limit = client.organizations.spend_limit.update(org.id, monthly_spend_limit_usd="12.50")
    assert isinstance(limit, SpendLimit) and limit.monthly_spend_limit_micro_usd == 12_500_000
    assert client.organizations.spend_limit.retrieve(org.id).monthly_spend_limit_usd == "12.500000"
    cleared = client.organizations.spend_limit.update(org.id, monthly_spend_limit_usd=None)
    assert cleared.monthly_spend_limit_usd is None


def test_organizations_and_keys(client, server):
    org = client.organizations.create(name="sdk-org")
    key = client.api_keys.create(organization_id=org.id, name="ci")
    assert isinstance(key, ApiKey) and key.key.startswith("tf-") and key.organization_id == org.id
    with Tenfold(base_url=server.base_url, api_key=key.key) as member:
        me = member.me()
        assert me.organization_id == org.id and me.is_admin is False
        assert member.fine_tuning.jobs.list().data == []


def test_batches_wait_and_results(client, base_model):
    lines = [{"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": base_model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}}
             for i in range(2)]
    lines.append({"custom_id": "bad", "method": "POST", "url": "/v1/chat/completions",
                  "body": {"model": "no-such-model", "messages": [{"role": "user", "content": "Hi"}]}})
    source = client.files.create(file=("batch.jsonl", jsonl(lines)), purpose="batch")
    assert source.format == "batch" and source.n_examples == 3
    batch = client.batches.create(input_file_id=source.id, endpoint="/v1/chat/completions", metadata={"k": "v"})
    assert batch.status == "validating" and batch.metadata == {"k": "v"}
    done = client.batches.wait(batch.id, poll=0.2, timeout=120)
    assert done.status == "completed" and done.done
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (3, 2, 1)
    results = {r.custom_id: r for r in client.batches.results(done)}
    assert set(results) == {"r0", "r1", "bad"}
    assert results["r0"].response.status_code == 200 and results["r0"].response.body["object"] == "chat.completion"
    assert results["bad"].response.status_code == 404
    assert [r.custom_id for r in client.batches.results(done.id)] == list(results)
    assert batch.id in [b.id for b in client.batches.list(limit=100).data]
    assert client.batches.retrieve(batch.id) == done
    with pytest.raises(ConflictError, match="can no longer be cancelled"):
        client.batches.cancel(batch.id)
