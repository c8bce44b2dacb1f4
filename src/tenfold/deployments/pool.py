"""The serving side of dedicated deployments in the api process: each deployment's pool of replicas, the
router that picks one per request, and the traffic window the autoscaler reads.

Owns: ``ReplicaClient`` (a replica as this process sees it: its engine over HTTP, requests in flight, the
adapters it holds, health), ``DeploymentPool`` and ``choose`` (least outstanding requests across healthy
replicas, with affinity for the replica already holding the request's adapter and for a session key, so
prefix caches are reused; affinity yields when that replica is overloaded), ``PooledEngine`` (counts a
request in flight and measures its time to first token), and ``DeploymentRuntime.engine_for``: the engine
for a route on a deployment, or a 503 (``DEPLOYMENT_SCALING_UP`` at zero replicas, which wakes the
deployment; ``DEPLOYMENT_UNAVAILABLE`` when none is healthy within the wait). Does not own: starting or
stopping replicas (the controller) or the scaling policy (``autoscaler``).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from tenfold.deployments.autoscaler import Window
from tenfold.engine.remote import RemoteEngine
from tenfold.engine.types import AdapterRef, GenerationDelta, GenerationRequest
from tenfold.errors import Unavailable

OVERLOAD_MARGIN = 4  # a replica this many requests busier than the least busy one loses its affinity


@dataclass(eq=False)
class ReplicaClient:
    replica_id: str
    engine: RemoteEngine
    healthy: bool = False
    in_flight: int = 0
    adapters: set[str] = field(default_factory=set)  # content digests loaded on the replica
    loaded_at: dict[str, float] = field(default_factory=dict)  # digest → when this process loaded it there


@dataclass(eq=False)
class DeploymentPool:
    deployment_id: str
    organization_id: str
    base_model: str
    replicas: dict[str, ReplicaClient] = field(default_factory=dict)
    window: Window = field(default_factory=Window)
    live: int = 0  # replicas starting or ready, as the controller last counted them
    waking: bool = False  # a request found no replica; the controller starts one at once
    wake_at: float | None = None  # when that request came (the cold start runs from here)
    cold_start_s: float = 10.0  # the last measured cold start (request to first healthy replica)
    changed: asyncio.Event = field(default_factory=asyncio.Event)  # set when a replica turns healthy

    def healthy(self) -> list[ReplicaClient]:
        return [r for r in self.replicas.values() if r.healthy]

    def in_flight(self) -> int:
        return sum(r.in_flight for r in self.replicas.values())


def _affinity_rank(session_key: str, replica: ReplicaClient) -> int:
    """Rendezvous hashing: the same key picks the same replica while the set of replicas is stable."""
    return int.from_bytes(hashlib.sha256(f"{session_key}|{replica.replica_id}".encode()).digest()[:8], "big")


def choose(replicas: list[ReplicaClient], *, adapter: str | None, session_key: str | None) -> ReplicaClient | None:
    """The replica for a request (see the module docstring); None when none is healthy."""
    if not replicas:
        return None
    least = min(r.in_flight for r in replicas)
    free = [r for r in replicas if r.in_flight <= least + OVERLOAD_MARGIN]
    if session_key:
        preferred = max(replicas, key=lambda r: _affinity_rank(session_key, r))
        if preferred in free:
            return preferred
    if adapter:
        holding = [r for r in free if adapter in r.adapters]
        if holding:
            return min(holding, key=lambda r: r.in_flight)
    return min(replicas, key=lambda r: (r.in_flight, r.replica_id))


class PooledEngine:
    """The engine of one chosen replica, counting the request in flight and its time to first token."""

    def __init__(self, pool: DeploymentPool, replica: ReplicaClient) -> None:
        self.pool, self.replica = pool, replica
        self.base_model = replica.engine.base_model
        self.max_context = replica.engine.max_context

    async def load_adapter(self, adapter: AdapterRef) -> None:
        await self.replica.engine.load_adapter(adapter)
        name = RemoteEngine.adapter_name(adapter)
        self.replica.adapters.add(name)
        self.replica.loaded_at[name] = time.time()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        stream = self.replica.engine.generate(request)  # validates eagerly
        return self._counted(stream)

    async def _counted(self, stream: AsyncIterator[GenerationDelta]) -> AsyncIterator[GenerationDelta]:
        started = time.time()  # wall time, as the autoscaler's window and the controller's clock
        self.pool.window.arrivals.append(started)
        self.replica.in_flight += 1
        first = True
        try:
            async for delta in stream:
                if first:
                    first = False
                    now = time.time()
                    self.pool.window.ttfts.append((now, (now - started) * 1000))
                yield delta
        finally:
            self.replica.in_flight -= 1
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()


@dataclass
class DeploymentRuntime:
    """Pools of this process's deployments, refreshed by the controller."""

    wait_seconds: float = 30.0
    pools: dict[str, DeploymentPool] = field(default_factory=dict)
    kick: asyncio.Event = field(default_factory=asyncio.Event)  # wakes the controller early
    # Raises when the replica backend cannot place replicas now (a Ray cluster that does not answer); called
    # before a deployment is created. None: nothing to check (local processes).
    check_backend: Callable[[], None] | None = None

    def pool(self, *, deployment_id: str, organization_id: str, base_model: str) -> DeploymentPool:
        """The deployment's pool, created on first use (by the service on create, or the controller)."""
        pool = self.pools.get(deployment_id)
        if pool is None:
            pool = self.pools[deployment_id] = DeploymentPool(deployment_id, organization_id, base_model)
        return pool

    async def engine_for(self, deployment_id: str, *, adapter: AdapterRef | None,
                         session_key: str | None) -> PooledEngine:
        pool = self.pools.get(deployment_id)
        if pool is None or (pool.live == 0 and not pool.healthy()):
            if pool is not None:
                pool.waking, pool.wake_at = True, pool.wake_at or time.time()
                pool.window.arrivals.append(time.time())  # it wanted capacity: traffic for the autoscaler
            self.kick.set()
            retry = max(1, round(pool.cold_start_s if pool is not None else 10.0))
            raise Unavailable(f"Deployment {deployment_id} is scaled to zero; a replica is starting. Retry after "
                              f"{retry} s.", code="DEPLOYMENT_SCALING_UP", param="model", retry_after=retry)
        deadline = time.monotonic() + self.wait_seconds
        digest = RemoteEngine.adapter_name(adapter) if adapter else None
        while True:
            replica = choose(pool.healthy(), adapter=digest, session_key=session_key)
            if replica is not None:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                raise Unavailable(f"Deployment {deployment_id} has no healthy replica right now (waited "
                                  f"{self.wait_seconds:g} s); retry shortly.", code="DEPLOYMENT_UNAVAILABLE",
                                  param="model", retry_after=5)
            pool.changed.clear()
            try:
                await asyncio.wait_for(pool.changed.wait(), timeout=min(left, 1.0))
            except asyncio.TimeoutError:
                pass
        engine = PooledEngine(pool, replica)
        if adapter is not None and digest not in replica.adapters:
            await engine.load_adapter(adapter)
        return engine
