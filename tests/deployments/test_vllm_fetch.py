"""vLLM replicas that do not share the api's disk (``TENFOLD_REPLICAS_SHARE_DISK=false``, as on other
machines): tenfold's vLLM plugin (installed into the vLLM environment by ``make test``) fetches an attached
adapter by content digest from the api with the deployment's secret, caches it in the replica's own folder,
and vLLM serves it from there; an adapter whose bytes do not match its digest is refused and nothing is
cached. One vLLM replica for the module; in CI it runs, never skips."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import start_server, stop_server, wait_for
from tests.deployments.test_adapter_fetch import corrupt_stored_adapter
from tests.deployments.test_vllm import BASE, SYSTEM, VLLM, make_adapter

pytestmark = [pytest.mark.timeout(900),
              pytest.mark.skipif(not VLLM, reason="no vLLM environment (make test creates .vllm-venv)")]


def test_vllm_replicas_fetch_adapters_by_digest_and_refuse_a_mismatch(tmp_path, model_cache):
    home, cache = tmp_path / "home", tmp_path / "replica-cache"  # the replica's own disk
    server = start_server(home, model_cache, extra_env={
        "TENFOLD_VLLM_EXECUTABLE": VLLM, "TENFOLD_REPLICAS_SHARE_DISK": "false", "TENFOLD_REPLICA_CACHE": str(cache),
        "TENFOLD_REPLICA_TORCH_THREADS": "1", "TENFOLD_VLLM_MAX_LORA_RANK": "16",
        "TENFOLD_REPLICA_KV_CACHE_BYTES": str(1 << 30), "TENFOLD_CONTROLLER_INTERVAL_SECONDS": "0.5"})
    try:
        from tenfold import Tenfold

        with server.client() as c, Tenfold(base_url=server.base_url, api_key=server.api_key) as sdk:
            r = c.post("/deployments", json={"base_model": BASE, "engine": "vllm"})
            assert r.status_code == 200, r.text
            dep = r.json()

            def ready():
                d = c.get(f"/deployments/{dep['id']}").json()
                if d["state"] == "FAILED":
                    raise AssertionError(d.get("failure_reason"))
                return next((x for x in d["replicas"] if x["healthy"]), None)

            replica = wait_for("a healthy vLLM replica", ready, timeout=600)
            good = sdk.adapters.import_(make_adapter(tmp_path / "good", model_cache), name="good")
            r = c.post("/adapters", json={"model": good.model, "deployment": dep["id"]})
            assert r.status_code == 200 and r.json()["verified"], r.text
            fetched = cache / "adapters" / good.digest.replace(":", "-")
            assert [p.name for p in (cache / "adapters").iterdir()] == [fetched.name]
            models = httpx.get(replica["endpoint"] + "/v1/models",
                               headers={"Authorization": f"Bearer {secret_of(home, dep['id'])}"}).json()["data"]
            assert {m["id"]: m["root"] for m in models if m.get("parent")} == {good.digest: str(fetched)}
            messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Which bread is best?"}]
            base = c.post("/chat/completions", json={"model": dep["id"], "max_tokens": 8, "temperature": 0,
                                                     "messages": messages})
            tuned = c.post("/chat/completions", json={"model": f"{good.model}#{dep['id']}", "max_tokens": 8,
                                                      "temperature": 0, "messages": messages})
            assert base.status_code == tuned.status_code == 200, (base.text, tuned.text)
            assert tuned.json()["choices"][0]["message"]["content"] != base.json()["choices"][0]["message"]["content"]

            bad = sdk.adapters.import_(make_adapter(tmp_path / "bad", model_cache, r=4), name="bad")
            corrupt_stored_adapter(home, bad.model)
            r = c.post("/adapters", json={"model": bad.model, "deployment": dep["id"]})
            assert r.status_code == 400, r.text
            assert bad.model in r.json()["error"]["message"] or bad.digest in r.json()["error"]["message"], r.text
            assert [p.name for p in (cache / "adapters").iterdir()] == [fetched.name]  # nothing of it cached
            log = (home / "replicas" / f"{replica['id']}.log").read_text()
            assert "digest mismatch" in log
    finally:
        stop_server(server)


def secret_of(home: Path, deployment_id: str) -> str:
    import sqlite3

    with sqlite3.connect(home / "tenfold.db") as db:
        return db.execute("select secret from deployments where id = ?", (deployment_id,)).fetchone()[0]
