"""Replicas that do not share the api's disk (``TENFOLD_REPLICAS_SHARE_DISK=false``, as on other machines):
an adapter attached to a deployment reaches its replica by content digest from the api (``GET
/internal/adapters/<digest>`` with the deployment's secret), is cached in the replica's own folder and
serves; the endpoint gives nothing to anyone else (no token, an organization's key, another digest); and an
adapter whose bytes do not match its digest is refused, leaving nothing cached."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest

from tests.adapters.test_import import make_adapter
from tests.conftest import TINY, new_org_key, start_server, stop_server, wait_for

pytestmark = pytest.mark.timeout(600)
ENV = {"TENFOLD_REPLICAS_SHARE_DISK": "false", "TENFOLD_REPLICA_TORCH_THREADS": "1",
       "TENFOLD_CONTROLLER_INTERVAL_SECONDS": "0.3", "TENFOLD_REPLICA_KV_CACHE_BYTES": str(16 << 20),
       "TENFOLD_REPLICA_UNLOAD_GRACE_SECONDS": "1"}




def test_replicas_fetch_adapters_by_digest_and_refuse_a_mismatch(tmp_path, model_cache):
    home = tmp_path / "home"
    cache = tmp_path / "replica-cache"  # the replica's own disk
    server = start_server(home, model_cache, extra_env={**ENV, "TENFOLD_REPLICA_CACHE": str(cache)})
    try:
        from tenfold import Tenfold

        with server.client() as c, Tenfold(base_url=server.base_url, api_key=server.api_key) as sdk:
            dep = c.post("/deployments", json={"base_model": TINY}).json()
            wait_for("a healthy replica", lambda: any(
                r["healthy"] for r in c.get(f"/deployments/{dep['id']}").json()["replicas"]))
            good = sdk.adapters.import_(make_adapter(tmp_path / "good", model_cache), name="good")
            r = c.post("/adapters", json={"model": good.model, "deployment": dep["id"]})
            assert r.status_code == 200 and r.json()["verified"], r.text
            fetched = list((cache / "adapters").iterdir())
            assert [p.name for p in fetched] == [good.digest.replace(":", "-")]
            assert (fetched[0] / "adapter_model.safetensors").is_file()
            answer = c.post("/chat/completions", json={"model": f"{good.model}#{dep['id']}", "max_tokens": 3,
                                                       "messages": [{"role": "user", "content": "Hi"}]})
            assert answer.status_code == 200, answer.text

            secret = sqlite3.connect(home / "tenfold.db").execute(
                "select secret from deployments where id = ?", (dep["id"],)).fetchone()[0]
            url = f"{server.url}/internal/adapters/{good.digest}"
            assert httpx.get(url, headers={"Authorization": f"Bearer {secret}"}).status_code == 200
            for headers in ({}, {"Authorization": f"Bearer {server.api_key}"}):  # an organization's key is not it
                assert httpx.get(url, headers=headers).status_code == 401
            other = httpx.get(f"{server.url}/internal/adapters/sha256:{'0' * 64}",
                              headers={"Authorization": f"Bearer {secret}"})
            assert other.status_code == 404
            with Tenfold(base_url=server.base_url, api_key=new_org_key(server, "neighbour")) as neighbour:
                theirs = neighbour.adapters.import_(make_adapter(tmp_path / "theirs", model_cache, seed=11),
                                                    name="theirs")
            stolen = httpx.get(f"{server.url}/internal/adapters/{theirs.digest}",
                               headers={"Authorization": f"Bearer {secret}"})
            assert stolen.status_code == 404  # another organization's adapter: not this deployment's to fetch
            assert "/internal/" not in str(c.get(server.url + "/openapi.json").json()["paths"])

            bad = sdk.adapters.import_(make_adapter(tmp_path / "bad", model_cache, seed=9), name="bad")
            corrupt_stored_adapter(home, bad.model)
            r = c.post("/adapters", json={"model": bad.model, "deployment": dep["id"]})
            assert r.status_code == 400 and "digest mismatch" in r.json()["error"]["message"], r.text
            assert [p.name for p in (cache / "adapters").iterdir()] == [good.digest.replace(":", "-")]

            def held() -> list[str]:
                return c.get(f"/deployments/{dep['id']}").json()["replicas"][0]["adapters"]

            assert good.model in held()
            assert c.delete(f"/adapters/{good.model}%23{dep['id']}").status_code == 200  # detached: unloaded
            wait_for("the replica to unload it", lambda: not held(), timeout=60)
    finally:
        stop_server(server)


def corrupt_stored_adapter(home: Path, model: str) -> None:
    """Flip a byte of an imported adapter's weights on the api's disk: they no longer match its digest."""
    stored = next(Path(home / "artifacts" / "adapters").glob(f"{model}*"))
    weights = next(stored.rglob("adapter_model.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
