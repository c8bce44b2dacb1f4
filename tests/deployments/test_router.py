"""The deployment router's choice of replica, and waiting for one: least outstanding requests, affinity for the
replica holding the adapter and for a session key (stable while the replicas are), affinity yielding to an
overloaded replica, and the 503s when no replica can take the request."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tenfold.deployments.pool import OVERLOAD_MARGIN, DeploymentRuntime, ReplicaClient, choose
from tenfold.engine.remote import RemoteEngine
from tenfold.engine.types import AdapterRef
from tenfold.errors import Unavailable


def replica(rid: str, in_flight: int = 0, adapters: tuple[str, ...] = ()) -> ReplicaClient:
    engine = RemoteEngine("http://127.0.0.1:9", "m", secret="s" * 20, max_context=64)
    return ReplicaClient(rid, engine, healthy=True, in_flight=in_flight, adapters=set(adapters))


def test_least_outstanding_wins_without_affinity():
    a, b, c = replica("a", 3), replica("b", 1), replica("c", 2)
    assert choose([a, b, c], adapter=None, session_key=None) is b
    assert choose([], adapter=None, session_key=None) is None


def test_adapter_affinity_until_that_replica_is_overloaded():
    holder, idle = replica("a", 2, ("d1",)), replica("b", 0)
    assert choose([holder, idle], adapter="d1", session_key=None) is holder
    holder.in_flight = OVERLOAD_MARGIN + 1
    assert choose([holder, idle], adapter="d1", session_key=None) is idle  # yields: it would queue
    assert choose([holder, idle], adapter="d2", session_key=None) is idle


def test_session_affinity_is_stable_and_spreads_sessions_and_yields():
    reps = [replica(r) for r in "abcd"]
    picks = {k: choose(reps, adapter=None, session_key=k) for k in (f"user-{i}" for i in range(40))}
    assert all(choose(reps, adapter=None, session_key=k) is r for k, r in picks.items())  # stable
    assert len({r.replica_id for r in picks.values()}) == 4  # spread over the replicas
    key, home = next(iter(picks.items()))
    home.in_flight = OVERLOAD_MARGIN + 1
    assert choose(reps, adapter=None, session_key=key) is not home


def test_no_replica_at_zero_is_scaling_up_and_wakes_the_controller():
    runtime = DeploymentRuntime(wait_seconds=5)
    pool = runtime.pool(deployment_id="dep-1", organization_id="o", base_model="m")

    async def call():
        return await runtime.engine_for("dep-1", adapter=None, session_key=None)

    with pytest.raises(Unavailable) as info:
        asyncio.run(call())
    assert info.value.code == "DEPLOYMENT_SCALING_UP" and info.value.retry_after >= 1
    assert pool.waking and runtime.kick.is_set() and pool.window.arrivals  # the request counts as traffic


def test_replicas_that_are_not_healthy_make_requests_wait_then_503():
    runtime = DeploymentRuntime(wait_seconds=0.5)
    pool = runtime.pool(deployment_id="dep-1", organization_id="o", base_model="m")
    pool.live, starting = 1, replica("a")
    starting.healthy = False
    pool.replicas["a"] = starting

    async def call():
        return await runtime.engine_for("dep-1", adapter=None, session_key=None)

    with pytest.raises(Unavailable) as info:
        asyncio.run(call())
    assert info.value.code == "DEPLOYMENT_UNAVAILABLE"

    async def becomes_healthy():
        pool.changed = asyncio.Event()  # a new event loop (each asyncio.run) needs its own

        async def later():
            await asyncio.sleep(0.1)
            starting.healthy = True
            pool.changed.set()

        asyncio.ensure_future(later())
        runtime.wait_seconds = 10
        return await runtime.engine_for("dep-1", adapter=None, session_key=None)

    engine = asyncio.run(becomes_healthy())
    assert engine.replica is starting


def test_an_adapter_is_loaded_on_the_chosen_replica_once(monkeypatch):
    runtime = DeploymentRuntime(wait_seconds=1)
    pool = runtime.pool(deployment_id="dep-1", organization_id="o", base_model="m")
    r = replica("a")
    pool.live, pool.replicas["a"] = 1, r
    loads = []

    async def load_adapter(adapter):
        loads.append(adapter.digest)

    monkeypatch.setattr(r.engine, "load_adapter", load_adapter)
    ref = AdapterRef(digest="sha256:x", path=Path("/nowhere"))

    async def twice():
        await runtime.engine_for("dep-1", adapter=ref, session_key=None)
        await runtime.engine_for("dep-1", adapter=ref, session_key=None)

    asyncio.run(twice())
    assert loads == ["sha256:x"] and "sha256:x" in r.adapters


def test_the_cache_salt_is_the_servers_and_separates_organizations_and_adapters():
    from tenfold.engine.types import GenerationRequest, SamplingParams

    def salt(engine: str, org: str, digest: str | None) -> str | None:
        remote = RemoteEngine("http://127.0.0.1:9", "m", secret="s" * 20, max_context=64, engine=engine)
        adapter = AdapterRef(digest, Path("/nowhere")) if digest else None
        return remote.cache_salt(GenerationRequest("r", [1], SamplingParams(), adapter=adapter, organization=org))

    # vLLM: one salt per (organization, adapter); the same pair always gets the same salt (so caching works)
    salts = {salt("vllm", org, digest) for org in ("org-a", "org-b") for digest in (None, "d1", "d2")}
    assert len(salts) == 6 and salt("vllm", "org-a", "d1") == salt("vllm", "org-a", "d1")
    assert "org-a" not in salt("vllm", "org-a", "d1")  # a digest of both, not the organization's id
    # a tenfold replica gets the organization and combines it with the adapter's digest itself
    assert salt("tenfold", "org-a", "d1") == "org-a"
