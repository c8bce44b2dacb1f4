"""Dedicated deployments against a real ``tenfold serve`` whose replicas are real processes (the tiny model),
with short scaling windows: serving through the official ``openai`` SDK exactly as shared serving does,
replicas that refuse direct calls, adapters per deployment, autoscaling 1 → 2 → 1, a crashed replica
replaced while its requests end retryably, scale to zero and back, replica-second billing, two
organizations, delete and undelete, a deployment that cannot start, and an api restart that adopts its live
replicas without billing a second twice. One server for the module; each test waits on conditions."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.api.helpers import TRAIN_ROWS, jsonl, upload, wait_job
from tests.conftest import TINY, new_org_key, start_server, stop_server, wait_for

ENV = {"TENFOLD_AUTOSCALE_UP_WINDOW_SECONDS": "3", "TENFOLD_CONTROLLER_INTERVAL_SECONDS": "0.3",
       "TENFOLD_BILLING_INTERVAL_SECONDS": "2", "TENFOLD_DEPLOYMENT_UNAVAILABLE_WAIT_SECONDS": "20",
       "TENFOLD_CONTROLLER_LEASE_SECONDS": "3", "TENFOLD_REPLICA_KV_CACHE_BYTES": str(16 << 20),
       "TENFOLD_REPLICA_TORCH_THREADS": "1", "TENFOLD_REPLICA_MAX_START_FAILURES": "2",
       "TENFOLD_REPLICA_ORPHAN_SECONDS": "120"}
pytestmark = pytest.mark.timeout(900)




@pytest.fixture(scope="module")
def live(tmp_path_factory, model_cache):
    home = tmp_path_factory.mktemp("deployments-home")
    box = {"server": start_server(home, model_cache, extra_env=ENV), "home": home, "cache": model_cache}
    yield box
    stop_server(box["server"])


@pytest.fixture
def c(live):
    with live["server"].client() as client:
        yield client


def create(c: httpx.Client, **body) -> dict:
    r = c.post("/deployments", json={"base_model": TINY, **body})
    assert r.status_code == 200, r.text
    return r.json()


def get(c: httpx.Client, dep_id: str) -> dict:
    r = c.get(f"/deployments/{dep_id}")
    assert r.status_code == 200, r.text
    return r.json()


def healthy(c: httpx.Client, dep_id: str, n: int = 1) -> dict | None:
    d = get(c, dep_id)
    return d if sum(r["healthy"] for r in d["replicas"]) == n and len(d["replicas"]) == n else None


def chat(c: httpx.Client, model: str, h: dict | None = None, **extra) -> httpx.Response:
    return c.post("/chat/completions", json={"model": model, "messages": [{"role": "user", "content": "Hi"}],
                                             "max_tokens": 4, "temperature": 0, **extra}, headers=h)


@pytest.fixture(scope="module")
def dep(live):
    with live["server"].client() as c:
        d = create(c, display_name="main", scale_down_window_s=600)
        return wait_for("a healthy replica", lambda: healthy(c, d["id"]), timeout=180)


@pytest.fixture(scope="module")
def job(live):
    with live["server"].client() as c:
        fid = upload(c, jsonl(TRAIN_ROWS)).json()["id"]
        job = c.post("/fine_tuning/jobs", json={"model": TINY, "training_file": fid, "seed": 3, "hyperparameters": {
            "n_epochs": 1, "batch_size": 4, "lora_r": 2, "lora_alpha": 4, "checkpoint_every": 2}}).json()
        assert wait_job(c, job["id"])["status"] == "succeeded"
        return job["id"]


def test_bad_input_is_refused_and_creates_nothing(c):
    before = c.get("/deployments", params={"include_deleted": True}).json()["data"]
    cases = [({"base_model": "no-such-model"}, "base_model"), ({"min_replicas": 3, "max_replicas": 2}, "min_replicas"),
             ({"target_rps": -1}, "target_rps"), ({"hardware_profile": "gpu.b300"}, "hardware_profile"),
             ({"engine": "vllm"}, "engine"), ({"max_replicas": 0}, "max_replicas")]
    for extra, param in cases:
        r = c.post("/deployments", json={"base_model": TINY, **extra})
        assert r.status_code == 400, (extra, r.text)
        assert r.json()["error"]["param"] == param, (extra, r.json())
    r = c.post("/deployments", json={"base_model": TINY, "hardware_profile": "gpu.b300"})
    assert "cpu" in r.json()["error"]["message"]  # lists what is available
    r = c.post("/deployments", json={"base_model": TINY, "engine": "vllm"})  # this server has no vLLM
    assert r.json()["error"]["code"] == "engine_not_installed" and "pip install" in r.json()["error"]["message"]
    assert c.get("/deployments", params={"include_deleted": True}).json()["data"] == before
    assert chat(c, "dep-doesnotexist").json()["error"]["code"] == "deployment_not_found"


def test_a_deployment_serves_like_shared_serving(live, c, dep):
    server = live["server"]
    replica = dep["replicas"][0]
    assert replica["state"] == "READY" and replica["pid"] and replica["endpoint"].startswith("http://127.0.0.1:")
    assert dep["state"] == "READY" and dep["last_decision"]["reason"]
    oai = openai.OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0, timeout=60)
    first = oai.chat.completions.create(model=dep["id"], messages=[{"role": "user", "content": "Tell me"}],
                                        max_tokens=5, temperature=0, seed=1)
    again = oai.chat.completions.create(model=dep["id"], messages=[{"role": "user", "content": "Tell me"}],
                                        max_tokens=5, temperature=0, seed=1)
    assert first.model == dep["id"] and first.usage.completion_tokens == 5
    assert again.choices[0].message.content == first.choices[0].message.content
    assert again.usage.prompt_tokens_details.cached_tokens > 0  # the replica's prefix cache
    shared = oai.chat.completions.create(model=TINY, messages=[{"role": "user", "content": "Tell me"}], max_tokens=5,
                                         temperature=0, seed=1)
    assert shared.choices[0].message.content == first.choices[0].message.content  # same weights, same answer
    chunks = list(oai.chat.completions.create(model=dep["id"], messages=[{"role": "user", "content": "Tell me"}],
                                              max_tokens=5, temperature=0, stream=True,
                                              stream_options={"include_usage": True}))
    assert "".join(x.choices[0].delta.content or "" for x in chunks if x.choices) == first.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == 5
    text = oai.completions.create(model=dep["id"], prompt="Once upon", max_tokens=3, logprobs=2)
    assert len(text.choices[0].logprobs.tokens) == 3 and text.usage.completion_tokens == 3
    assert dep["id"] in [m.id for m in oai.models.list()]
    rows = wait_for("a usage row per request", lambda: (x := [
        u for u in c.get("/usage", params={"limit": 100}).json()["data"]
        if u["deployment_id"] == dep["id"] and u["usage_type"] != "deployment"]) and len(x) >= 4 and x)
    assert all(u["cost_micro_usd"] == 0 for u in rows)  # tokens on a deployment cost nothing
    # Nothing reaches a replica around the api: no secret, or a wrong one, is a 401.
    for headers in ({}, {"Authorization": f"Bearer {server.api_key}"}, {"Authorization": "Bearer " + "x" * 43}):
        for method, path in (("GET", "/health"), ("POST", "/v1/completions"), ("POST", "/v1/load_lora_adapter")):
            r = httpx.request(method, replica["endpoint"] + path, headers=headers, json={"model": TINY, "prompt": [1]})
            assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    metrics = c.get(server.url + "/metrics").text
    assert f'tenfold_deployment_replicas_ready{{deployment="{dep["id"]}"}} 1.0' in metrics
    assert f'tenfold_deployment_cold_starts_total{{deployment="{dep["id"]}"}}' in metrics


def test_adapters_attach_per_deployment(live, c, dep, job):
    dep_id = dep["id"]
    r = c.post("/adapters", json={"model": f"{job}/step-2", "deployment": dep_id})
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["id"] == f"{job}#{dep_id}" and a["deployment_id"] == dep_id and a["verified"] is True
    on_dep = chat(c, f"{job}#{dep_id}")
    assert on_dep.status_code == 200 and on_dep.headers["x-tenfold-checkpoint"] == f"{job}/step-2"
    assert chat(c, f"{job}#{dep_id}", h={"X-Tenfold-Expected-Checkpoint": f"{job}/step-4"}).status_code == 409
    assert chat(c, job).status_code == 404  # a bare job id means shared serving, where it is not deployed
    c.post("/adapters", json={"model": job})  # deploy the final adapter on shared serving: tracked apart
    assert chat(c, job).headers.get("x-tenfold-checkpoint") is None
    assert chat(c, f"{job}#{dep_id}").headers["x-tenfold-checkpoint"] == f"{job}/step-2"
    models = [m["id"] for m in c.get("/models").json()["data"]]
    assert f"{job}#{dep_id}" in models and job in models
    assert f"{job}#{dep_id}" in get(c, dep_id)["adapters"]
    plan = c.post("/adapters/plans", json={"model": job, "deployment": dep_id}).json()
    assert plan["would_serve_as"] == f"{job}#{dep_id}" and plan["would_replace"] == f"{job}/step-2"
    # A base model that differs: a local copy of the tiny model is another base model (no replicas needed).
    other = Path(live["home"]) / "other-base"
    if not other.exists():
        shutil.copytree(live["cache"] / "tiny-random-llama", other)
    od = create(c, base_model=str(other), min_replicas=0)
    r = c.post("/adapters", json={"model": job, "deployment": od["id"]})
    assert r.status_code == 400 and TINY in r.json()["error"]["message"] and str(other) in r.json()["error"]["message"]
    assert c.delete(f"/deployments/{od['id']}").status_code == 200
    # Deleting a deployment that serves adapters needs force (or detaching them first).
    r = c.delete(f"/deployments/{dep_id}")
    assert r.status_code == 409 and f"{job}#{dep_id}" in r.json()["error"]["message"]
    assert c.delete(f"/adapters/{job}%23{dep_id}").status_code == 200
    assert chat(c, f"{job}#{dep_id}").status_code == 404


def test_organizations_are_isolated(live, c, dep):
    server = live["server"]
    other = new_org_key(server, "dep-other")
    with server.client(other) as o:
        assert o.get(f"/deployments/{dep['id']}").status_code == 404
        assert o.patch(f"/deployments/{dep['id']}", json={"max_replicas": 2}).status_code == 404
        assert o.delete(f"/deployments/{dep['id']}").status_code == 404
        assert o.post(f"/deployments/{dep['id']}/undelete").status_code == 404
        assert o.get("/deployments").json()["data"] == []
        assert chat(o, dep["id"]).status_code == 404
        assert dep["id"] not in [m["id"] for m in o.get("/models").json()["data"]]
        assert o.post("/adapters", json={"model": "ftjob-0000", "deployment": dep["id"]}).status_code == 404


def _load(c: httpx.Client, model: str, seconds: float, threads: int = 3) -> None:
    stop = time.monotonic() + seconds

    def run() -> None:
        while time.monotonic() < stop:
            chat(c, model, max_tokens=2)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def test_autoscaling_one_two_one(live, c):
    d = create(c, min_replicas=1, max_replicas=2, target_rps=1.0, scale_down_window_s=6)
    wait_for("one healthy replica", lambda: healthy(c, d["id"]), timeout=180)
    _load(c, d["id"], seconds=6)
    two = wait_for("two healthy replicas", lambda: healthy(c, d["id"], 2), timeout=180)
    assert two["desired_replicas"] == 2 and "exceeds the target" in two["last_decision"]["reason"] or \
        two["desired_replicas"] == 2
    _load(c, d["id"], seconds=2)  # both replicas take requests (least outstanding)
    assert {r["id"] for r in get(c, d["id"])["replicas"]} == {r["id"] for r in two["replicas"]}
    one = wait_for("back to one replica", lambda: healthy(c, d["id"], 1), timeout=120)
    assert one["desired_replicas"] == 1 and "fits 1 replica" in one["last_decision"]["reason"]
    assert c.delete(f"/deployments/{d['id']}").status_code == 200


def test_a_crashed_replica_is_replaced_and_its_requests_end_retryably(live, c, dep):
    dep_id = dep["id"]
    before = get(c, dep_id)["replicas"][0]
    results: dict = {}
    streaming = threading.Event()

    def long_request() -> None:
        results["plain"] = chat(c, dep_id, max_tokens=2000, ignore_eos=True)

    def long_stream() -> None:
        with c.stream("POST", "/chat/completions", json={"model": dep_id, "stream": True, "max_tokens": 2000,
                                                         "ignore_eos": True,
                                                         "messages": [{"role": "user", "content": "Hi"}]}) as r:
            results["stream_status"], lines = r.status_code, []
            for line in r.iter_lines():
                lines.append(line)
                streaming.set()  # the response has started: a failure from here on is an error event
            results["stream"] = "\n".join(lines)

    threads = [threading.Thread(target=long_request), threading.Thread(target=long_stream)]
    for t in threads:
        t.start()
    assert streaming.wait(timeout=60)
    wait_for("both requests in flight", lambda: get(c, dep_id)["replicas"][0]["in_flight"] >= 2, timeout=30, every=0.05)
    os.kill(before["pid"], signal.SIGKILL)
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive(), "a request hung on a dead replica"
    plain = results["plain"]
    assert plain.status_code == 503 and plain.headers.get("retry-after"), plain.text
    assert plain.json()["error"]["code"] == "replica_unavailable"
    assert results["stream_status"] == 200 and '"error"' in results["stream"] and "[DONE]" not in results["stream"]
    after = wait_for("a replacement replica", lambda: (d := healthy(c, dep_id)) and
                     d["replicas"][0]["id"] != before["id"] and d, timeout=180)
    assert after["replicas"][0]["pid"] != before["pid"]
    assert chat(c, dep_id).status_code == 200


def test_scale_to_zero_and_back(live, c):
    d = create(c, min_replicas=0, max_replicas=1, scale_down_window_s=3)
    assert d["desired_replicas"] == 0 and d["replicas"] == []
    wait_for("READY with no replicas", lambda: get(c, d["id"])["state"] == "READY", timeout=30)
    r = chat(c, d["id"])
    assert r.status_code == 503 and r.json()["error"]["code"] == "DEPLOYMENT_SCALING_UP"
    assert int(r.headers["retry-after"]) >= 1
    up = wait_for("a replica started by the request", lambda: healthy(c, d["id"]), timeout=180)
    assert "request arrived" in up["last_decision"]["reason"] or up["desired_replicas"] == 1
    assert chat(c, d["id"]).status_code == 200
    down = wait_for("scaled back to zero", lambda: (x := get(c, d["id"]))["replicas"] == [] and x, timeout=60)
    assert down["desired_replicas"] == 0 and "zero" in down["last_decision"]["reason"]
    assert "tenfold_deployment_cold_start_seconds_count" in c.get(live["server"].url + "/metrics").text
    assert c.delete(f"/deployments/{d['id']}").status_code == 200


def test_a_replica_that_cannot_start_fails_the_deployment_with_its_log(live, c):
    broken = Path(live["home"]) / "broken-base"
    if not broken.exists():
        shutil.copytree(live["cache"] / "tiny-random-llama", broken)
        for f in broken.glob("*.safetensors"):
            f.write_bytes(b"not a safetensors file")
    d = create(c, base_model=str(broken))
    failed = wait_for("FAILED", lambda: (x := get(c, d["id"]))["state"] == "FAILED" and x, timeout=240)
    assert "failed to start" in failed["failure_reason"] and "Last log lines" in failed["failure_reason"]
    assert failed["replicas"] == []
    r = chat(c, d["id"])
    assert r.status_code == 409 and r.json()["error"]["code"] == "deployment_failed"
    assert c.delete(f"/deployments/{d['id']}").status_code == 200


def test_delete_undelete_and_billing(live, c, dep):
    dep_id = dep["id"]
    d = create(c, min_replicas=1, display_name="short-lived")
    wait_for("a healthy replica", lambda: healthy(c, d["id"]), timeout=180)
    gone = c.delete(f"/deployments/{d['id']}").json()
    assert gone["state"] in ("DELETING", "DELETED") and gone["undelete_until"] > time.time()
    assert c.get(f"/deployments/{d['id']}").status_code == 404
    assert c.patch(f"/deployments/{d['id']}", json={"max_replicas": 2}).status_code == 404
    wait_for("DELETED", lambda: any(x["id"] == d["id"] and x["state"] == "DELETED"
                                    for x in c.get("/deployments", params={"include_deleted": True}).json()["data"]))
    back = c.post(f"/deployments/{d['id']}/undelete")
    assert back.status_code == 200 and back.json()["state"] in ("CREATING", "READY")
    wait_for("healthy again after undelete", lambda: healthy(c, d["id"]), timeout=180)
    assert c.delete(f"/deployments/{d['id']}").status_code == 200
    # Replica-seconds: written at least every billing interval, from a watermark (no span twice).
    rows = wait_for("replica-second rows", lambda: [u for u in c.get("/usage", params={"limit": 100}).json()["data"]
                                                    if u["usage_type"] == "deployment" and u["model"] == dep_id])
    price = 28  # cpu, micro-dollars per replica-second (the default price table)
    assert all(u["accelerator_type"] == "cpu" and u["cost_micro_usd"] == u["accelerator_seconds"] * price
               for u in rows)
    csv = c.get("/usage/export", params={"start_time": int(time.time()) - 3600, "end_time": int(time.time()) + 60}).text
    assert ",deployment,cpu," in csv


def test_the_cli_and_the_sdk_drive_deployments(live, c, job, monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from tenfold import Tenfold
    from tenfold.cli.main import app
    from tenfold.types.deployments import Deployment

    server = live["server"]
    env = {"TENFOLD_BASE_URL": server.base_url, "TENFOLD_API_KEY": server.api_key,
           "TENFOLD_CONFIG_DIR": str(tmp_path / "config"), "COLUMNS": "200"}
    run = lambda *args: CliRunner().invoke(app, list(args), env=env)  # noqa: E731
    out = run("deployments", "create", TINY, "-g", "cpu", "--min-replicas", "1", "--max-replicas", "1",
              "--target-rps", "5", "--stabilisation", "60", "--display-name", "from-cli", "-w")
    assert out.exit_code == 0, out.output
    assert "cold start:" in out.output and "READY" in out.output and "from-cli" in out.output
    dep_id = next(w for w in out.output.split() if w.startswith("dep-"))
    assert dep_id in run("deployments", "list").output
    assert "rep-" in run("deployments", "get", dep_id).output
    assert run("deploy", job, "--deployment", dep_id).exit_code == 0
    chat_out = run("chat", f"{job}#{dep_id}", "-m", "Hello")
    assert chat_out.exit_code == 0, chat_out.output
    with Tenfold(base_url=server.base_url, api_key=server.api_key) as client:
        d = client.deployments.update(dep_id, max_replicas=2, target_rps=50)
        assert isinstance(d, Deployment) and d.max_replicas == 2 and d.target_rps == 50
        assert dep_id in [x.id for x in client.deployments.list().data]
        reply = client.chat.completions.create(model=dep_id, messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
        assert reply.usage.completion_tokens == 2
        bad = run("deployments", "delete", dep_id)
        assert bad.exit_code != 0 and "--force" in bad.output
        gone = client.deployments.delete(dep_id, force=True)
        assert gone.state in ("DELETING", "DELETED") and gone.adapters == []
        assert client.deployments.undelete(dep_id).state in ("CREATING", "READY")
        assert client.deployments.delete(dep_id).state in ("DELETING", "DELETED")


def test_a_spend_limit_holds_the_deployment_at_its_minimum(live, c):
    server = live["server"]
    key = new_org_key(server, "limited")
    with server.client(key) as o:
        org = o.get("/me").json()["organization_id"]
        d = o.post("/deployments", json={"base_model": TINY, "min_replicas": 0, "max_replicas": 1,
                                         "scale_down_window_s": 600}).json()
        assert chat(o, d["id"]).status_code == 503  # wakes it
        wait_for("a replica", lambda: healthy(o, d["id"]), timeout=180)
        wait_for("replica-seconds billed", lambda: _billed(o, d["id"]))
        assert c.put(f"/organizations/{org}/spend_limit", json={"monthly_spend_limit_usd": "0.000001"}).status_code == 200
        r = chat(o, d["id"])
        assert r.status_code == 429 and r.json()["error"]["code"] == "spend_limit_exceeded"
        # the replicas stop, then the decision is recorded (two writes): wait for both
        held = wait_for("held at min_replicas (0)", lambda: (x := get(o, d["id"]))["replicas"] == [] and
                        "spend limit" in x["last_decision"]["reason"] and x, timeout=60)
        assert held["desired_replicas"] == 0  # despite the 600 s window
        assert c.put(f"/organizations/{org}/spend_limit", json={"monthly_spend_limit_usd": None}).status_code == 200
        assert o.delete(f"/deployments/{d['id']}").status_code == 200


def _billed(c: httpx.Client, dep_id: str) -> list[dict]:
    out, after = [], None
    while True:
        page = c.get("/usage", params={"limit": 100, "after": after}).json()
        out += [u for u in page["data"] if u["usage_type"] == "deployment" and u["model"] == dep_id]
        if not page["has_more"]:
            return out
        after = page["last_id"]


def test_a_restarted_api_adopts_live_replicas_without_billing_twice(live, c, dep):
    server = live["server"]
    dep_id = dep["id"]
    replica = wait_for("a healthy replica", lambda: healthy(c, dep_id), timeout=180)["replicas"][0]
    billed_before = len(_billed(c, dep_id))
    server.proc.send_signal(signal.SIGKILL)  # a crash: the replica outlives the api
    server.proc.wait(timeout=30)
    os.kill(replica["pid"], 0)  # still running
    live["server"] = server = start_server(live["home"], live["cache"], extra_env=ENV)
    with server.client() as c2:
        d = wait_for("the replica adopted", lambda: healthy(c2, dep_id), timeout=120)
        assert d["replicas"][0]["id"] == replica["id"] and d["replicas"][0]["pid"] == replica["pid"]
        assert chat(c2, dep_id).status_code == 200
        rows = wait_for("billing goes on after the restart", lambda: (x := _billed(c2, dep_id))
                        and len(x) > billed_before + 1 and x)
        spans = sorted((u["created_at"], u["accelerator_seconds"], u["request_id"]) for u in rows)
        assert len({s[2] for s in spans}) == len(spans)  # each span written once
        starts = sorted(float(u["request_id"].split("@")[1]) for u in rows if u["request_id"].startswith(replica["id"]))
        seconds = sum(u["accelerator_seconds"] for u in rows if u["request_id"].startswith(replica["id"]))
        assert seconds <= time.time() - starts[0] + 2  # no second billed twice across the restart
    # A clean stop stops the replicas; the next start brings them back.
    stop_server(server)
    wait_for("the replica stopped with the api", lambda: subprocess.run(
        [sys.executable, "-c", f"import os; os.kill({replica['pid']}, 0)"], capture_output=True).returncode != 0,
        timeout=30)
    live["server"] = server = start_server(live["home"], live["cache"], extra_env=ENV)
    with server.client() as c3:
        wait_for("replicas brought back", lambda: healthy(c3, dep_id), timeout=180)
