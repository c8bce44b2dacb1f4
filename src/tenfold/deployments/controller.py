"""The deployment controller: reconciles every deployment's desired state in the database with its actual
replicas, once a second, in the api process that holds the controller lease (one per database).

Owns, per tick: health checks (a replica turns READY when it answers with the deployment's secret; one
found dead, or unhealthy after it was ready, is replaced; one not healthy within the start timeout failed
to start, and ``replica_max_start_failures`` such failures in a row put the deployment in ``FAILED`` with
the replica's last log lines), the autoscaler's decision (or the minimum while the organization is over its
spend limit, or zero while deleting), starting and stopping replicas through the backend, the states
(``CREATING → READY ⇄ UPDATING``, ``DELETING → DELETED``, ``FAILED``), unloading adapters no longer attached
from the replicas that hold them, the metrics, and billing: each
replica's seconds are written from its watermark (``billed_until``) at least every ``billing_interval_seconds``
and when it stops, in the transaction that moves the watermark, so no second is billed twice or lost.
On start it adopts live replicas an earlier api left running (healthy with the secret) and bills a dead
one up to when it was last seen; on a clean stop it stops its replicas, which the next start brings back.
Processes without the lease only keep their pools' view of the replicas fresh. Does not own: the policy
(``autoscaler``), routing (``pool``) or how a replica is started (the backend).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
import uuid

import httpx

from tenfold.billing import limits
from tenfold.billing.meter import add_replica_usage
from tenfold.config import Settings
from tenfold.deployments import metrics, vllm
from tenfold.deployments.autoscaler import Targets, decide
from tenfold.deployments.pool import DeploymentPool, DeploymentRuntime, ReplicaClient
from tenfold.deployments.replicas import ReplicaBackend, ReplicaHandle, ReplicaSpec
from tenfold.engine.remote import RemoteEngine
from tenfold.errors import RateLimited
from tenfold.store import deployment_repo as drepo
from tenfold.store import lease_repo
from tenfold.store.db import Database
from tenfold.store.tables import Deployment, DeploymentReplica

log = logging.getLogger("tenfold.deployments")
LEASE = "deployment-controller"


class Controller:
    def __init__(self, settings: Settings, db: Database, runtime: DeploymentRuntime, backend: ReplicaBackend) -> None:
        self.settings, self.db, self.runtime, self.backend = settings, db, runtime, backend
        self.holder = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.leader = False
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(3.0))
        self._task: asyncio.Task | None = None
        self._adopted = False

    # ---- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="tenfold-deployment-controller")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        if self.leader:
            await asyncio.to_thread(self._stop_all)
            await asyncio.to_thread(self._in_session, lambda s: lease_repo.release_lease(
                s, name=LEASE, holder=self.holder))
        for pool in self.runtime.pools.values():
            for client in pool.replicas.values():
                await client.engine.stop()
        await self._http.aclose()

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # the controller must survive anything one deployment does
                log.exception("deployment controller tick failed")
            self.runtime.kick.clear()
            try:
                await asyncio.wait_for(self.runtime.kick.wait(), timeout=self.settings.controller_interval_seconds)
            except asyncio.TimeoutError:
                pass

    def _in_session(self, fn):
        with self.db.session() as s:
            return fn(s)

    # ---- one tick --------------------------------------------------------------------------------

    async def tick(self) -> None:
        self.leader = await asyncio.to_thread(self._in_session, lambda s: lease_repo.take_lease(
            s, name=LEASE, holder=self.holder, seconds=self.settings.controller_lease_seconds))
        deployments = await asyncio.to_thread(self._in_session, drepo.deployments_to_reconcile)
        for dep in deployments:
            try:
                await self._reconcile(dep)
            except Exception:
                log.exception("deployment %s: reconcile failed", dep.id)
        if self.leader:
            self._adopted = True
            await asyncio.to_thread(self._bill)

    def _replicas(self, deployment_id: str) -> list[DeploymentReplica]:
        return self._in_session(lambda s: drepo.list_replicas(s, deployment_id=deployment_id, live_only=True))

    def _client(self, pool: DeploymentPool, dep: Deployment, row: DeploymentReplica) -> ReplicaClient:
        client = pool.replicas.get(row.id)
        if client is None:
            engine = RemoteEngine(row.endpoint or "", dep.base_model, secret=dep.secret, max_context=2048,
                                  retry_after=max(1.0, pool.cold_start_s), engine=dep.engine,
                                  share_disk=self.settings.replicas_share_disk)
            client = pool.replicas[row.id] = ReplicaClient(row.id, engine)
        return client

    async def _health(self, dep: Deployment, client: ReplicaClient) -> bool:
        if dep.engine == "vllm":
            body = await vllm.health(self._http, client.engine.endpoint, dep.secret)
            if body is None:
                return False
            client.engine.max_context = int(body["max_context"] or client.engine.max_context)
            client.adapters = set(body["adapters"])
            return True
        try:
            r = await self._http.get(client.engine.endpoint + "/health",
                                     headers={"Authorization": f"Bearer {dep.secret}"})
            body = r.json() if r.status_code == 200 else {}
        except (httpx.HTTPError, ValueError):
            return False
        if body.get("status") != "ok":
            return False
        client.engine.max_context = int(body.get("max_context") or client.engine.max_context)
        client.adapters = set(body.get("adapters") or ())
        return True

    async def _reconcile(self, dep: Deployment) -> None:
        pool = self.runtime.pool(deployment_id=dep.id, organization_id=dep.organization_id, base_model=dep.base_model)
        now = time.time()
        rows = await asyncio.to_thread(self._replicas, dep.id)
        for row in rows:
            await self._check(dep, pool, row, now)
        for gone in set(pool.replicas) - {r.id for r in rows}:
            await pool.replicas.pop(gone).engine.stop()
            metrics.forget_replica(dep.id, gone)
        await self._unload_detached(dep, pool, now)
        if not self.leader:
            pool.live = len(rows)
            return
        dep = await asyncio.to_thread(self._in_session, lambda s: drepo.get_deployment(
            s, deployment_id=dep.id, organization_id=None))
        rows = await asyncio.to_thread(self._replicas, dep.id)
        desired, reason, changed = self._desired(dep, pool, now)
        live = len(rows)
        if desired > live and dep.state != "FAILED" and dep.start_failures < self.settings.replica_max_start_failures:
            for _ in range(desired - live):
                await asyncio.to_thread(self._start_replica, dep)
        elif desired < live:
            order = sorted(rows, key=lambda r: (r.state == "READY", -(pool.replicas[r.id].in_flight
                                                                        if r.id in pool.replicas else 0), r.seq))
            for row in order[: live - desired]:
                await asyncio.to_thread(self._stop_replica, dep, row, "scaled down")
        rows = await asyncio.to_thread(self._replicas, dep.id)
        pool.live = len(rows)
        ready = sum(1 for r in rows if r.state == "READY")
        state = self._state(dep, desired, len(rows), ready)
        values = {"state": state, "desired_replicas": desired,
                  "last_decision": {"at": int(now), "replicas": desired, "reason": reason}}
        if changed:
            values["last_change_at"] = now
        if state == "DELETED":
            values["desired_replicas"] = 0
        await asyncio.to_thread(self._in_session, lambda s: drepo.update_deployment(s, deployment_id=dep.id, **values))
        self._export(dep, pool, desired, ready, now)
        if state == "DELETED":
            self.runtime.pools.pop(dep.id, None)

    async def _check(self, dep: Deployment, pool: DeploymentPool, row: DeploymentReplica, now: float) -> None:
        """Health of one live replica: ready, still starting, failed to start, or gone."""
        client = self._client(pool, dep, row)
        handle = ReplicaHandle(row.id, row.pid, row.endpoint or "", row.placement)
        alive = await asyncio.to_thread(self.backend.alive, handle) if row.pid else True
        healthy = alive and await self._health(dep, client)
        client.healthy = healthy
        if healthy:
            updates: dict = {"last_seen_at": now}
            if row.state == "STARTING":
                updates.update(state="READY", ready_at=now)
                woken = pool.wake_at is not None
                cold = now - (pool.wake_at if woken else row.started_at)
                pool.cold_start_s, pool.waking, pool.wake_at = max(1.0, cold), False, None
                metrics.COLD_STARTS.labels(dep.id).inc()
                metrics.COLD_START_SECONDS.labels(dep.id).observe(cold)
                log.info("deployment %s: replica %s is ready after %.1f s", dep.id, row.id, cold)
                # Woken from zero: the stabilisation window runs from now, so the clients told to retry find it.
                values = {"start_failures": 0, **({"last_change_at": now} if woken else {})}
                await asyncio.to_thread(self._in_session, lambda s: drepo.update_deployment(
                    s, deployment_id=dep.id, **values))
                pool.changed.set()
            await asyncio.to_thread(self._in_session, lambda s: drepo.update_replica(s, replica_id=row.id, **updates))
            return
        if not self.leader:
            return
        if row.state == "READY" or not alive:
            why = "exited" if not alive else "stopped answering its health checks"
            if row.state == "STARTING":
                await asyncio.to_thread(self._failed_start, dep, row, f"the replica {why} while starting")
            else:
                log.warning("deployment %s: replica %s %s; replacing it", dep.id, row.id, why)
                await asyncio.to_thread(self._stop_replica, dep, row, f"replica {why}", state="FAILED")
        elif now - row.started_at > self.settings.replica_start_timeout_seconds:
            await asyncio.to_thread(self._failed_start, dep, row, "not healthy within "
                                    f"{self.settings.replica_start_timeout_seconds:g} s")

    async def _unload_detached(self, dep: Deployment, pool: DeploymentPool, now: float) -> None:
        """Unload from each healthy replica the adapters no longer attached to the deployment (a detach, a
        forced delete), so a replica's adapter list follows the deployment's; one loaded in the last
        ``replica_unload_grace_seconds`` is left alone (an attach loads it before its row is written)."""
        if not self.leader or not any(c.adapters for c in pool.healthy()):
            return
        attached = await asyncio.to_thread(self._in_session, lambda s: {
            a.digest for a in drepo.list_deployment_adapters(s, deployment_id=dep.id)})
        for client in pool.healthy():
            for digest in sorted(client.adapters - attached):
                if now - client.loaded_at.get(digest, 0.0) < self.settings.replica_unload_grace_seconds:
                    continue
                try:
                    await client.engine.unload_adapter(digest)
                except Exception as exc:  # noqa: BLE001 - retried next tick; the replica may be going away
                    log.warning("deployment %s: unloading %s from %s failed: %s", dep.id, digest,
                                client.replica_id, exc)
                    continue
                client.adapters.discard(digest)
                client.loaded_at.pop(digest, None)
                log.info("deployment %s: unloaded detached adapter %s from %s", dep.id, digest, client.replica_id)

    def _desired(self, dep: Deployment, pool: DeploymentPool, now: float) -> tuple[int, str, bool]:
        if dep.state in ("DELETING", "DELETED"):
            return 0, "deleting", dep.desired_replicas != 0
        try:
            limits.check_spend_limit(self.db, dep.organization_id, now=now)
        except RateLimited:
            n = dep.min_replicas
            return n, "the organization reached its monthly spend limit: held at min_replicas", n != dep.desired_replicas
        targets = Targets(dep.min_replicas, dep.max_replicas, dep.target_rps, dep.target_latency_p95_ms,
                          dep.scale_down_window_s, up_window=self.settings.autoscale_up_window_seconds)
        pool.window.trim(now - max(targets.scale_down_window, targets.up_window) - 5)
        d = decide(targets, pool.window, current=dep.desired_replicas, now=now, last_change=dep.last_change_at,
                   waking=pool.waking)
        return d.replicas, d.reason, d.changed

    def _state(self, dep: Deployment, desired: int, live: int, ready: int) -> str:
        if dep.state in ("DELETING", "DELETED"):
            return "DELETED" if live == 0 else "DELETING"
        if dep.start_failures >= self.settings.replica_max_start_failures:
            return "FAILED"
        if dep.state == "CREATING" and not (ready or desired == 0):
            return "CREATING"
        return "READY" if ready == desired == live else ("UPDATING" if dep.state != "CREATING" else "READY")

    def _export(self, dep: Deployment, pool: DeploymentPool, desired: int, ready: int, now: float) -> None:
        metrics.DESIRED.labels(dep.id).set(desired)
        metrics.READY.labels(dep.id).set(ready)
        metrics.IN_FLIGHT.labels(dep.id).set(pool.in_flight())
        p95 = pool.window.p95_ttft_ms(now, self.settings.autoscale_up_window_seconds)
        metrics.P95_TTFT.labels(dep.id).set(p95 or 0)
        for client in pool.replicas.values():
            metrics.REPLICA_IN_FLIGHT.labels(dep.id, client.replica_id).set(client.in_flight)
            metrics.REPLICA_HEALTHY.labels(dep.id, client.replica_id).set(1 if client.healthy else 0)

    # ---- starting, stopping, failing (blocking: run in threads) ---------------------------------------

    def _start_replica(self, dep: Deployment) -> None:
        now = time.time()
        row = self._in_session(lambda s: drepo.add_replica(s, deployment_id=dep.id, started_at=now))
        spec = ReplicaSpec(dep.id, row.id, dep.base_model, dep.hardware_profile, dep.engine, dep.secret)
        try:
            handle = self.backend.start(spec)
        except Exception as exc:  # noqa: BLE001 - a start that cannot even launch is a failed start
            self._failed_start(dep, row, f"could not launch: {exc}")
            return
        self._in_session(lambda s: drepo.update_replica(s, replica_id=row.id, pid=handle.pid, endpoint=handle.endpoint,
                                                        placement=handle.placement))
        log.info("deployment %s: started replica %s (pid %s, %s) at %s", dep.id, row.id, handle.pid,
                 handle.placement, handle.endpoint)

    def _stop_replica(self, dep: Deployment, row: DeploymentReplica, why: str, *, state: str = "STOPPED") -> None:
        self.backend.stop(ReplicaHandle(row.id, row.pid, row.endpoint or "", row.placement))
        now = time.time()
        # A replica that died is billed up to when it was last seen alive, one stopped here up to now.
        end = now if state == "STOPPED" else max(row.last_seen_at or row.started_at, row.billed_until)
        self._in_session(lambda s: drepo.update_replica(s, replica_id=row.id, state=state, stopped_at=end,
                                                        last_error=None if state == "STOPPED" else why))
        log.info("deployment %s: replica %s %s (%s)", dep.id, row.id, state.lower(), why)

    def _failed_start(self, dep: Deployment, row: DeploymentReplica, why: str) -> None:
        tail = self.backend.log_tail(row.id)
        self._stop_replica(dep, row, why, state="FAILED")
        failures = dep.start_failures + 1
        reason = (f"Replica {row.id} failed to start ({why}); {failures} failed start(s) in a row. Last log lines:\n"
                  f"{tail}\nCheck the base model and hardware profile, then update the deployment to try again.")
        self._in_session(lambda s: drepo.update_deployment(s, deployment_id=dep.id, start_failures=failures,
                                                           failure_reason=reason))
        dep.start_failures = failures

    def _stop_all(self) -> None:
        with self.db.session() as s:
            deps = {d.id: d for d in drepo.deployments_to_reconcile(s)}
        for dep in deps.values():
            for row in self._replicas(dep.id):
                self._stop_replica(dep, row, "the api stopped")
        self._bill()

    # ---- billing ------------------------------------------------------------------------------------

    def _bill(self) -> None:
        """Write replica-seconds from each watermark: whole seconds while running (the fraction waits for
        the next write), the rest rounded up once the replica has stopped."""
        now = time.time()
        with self.db.session() as s:
            rows = drepo.unbilled_replicas(s)
            deps = {}
            for row in rows:
                if row.deployment_id not in deps:
                    deps[row.deployment_id] = drepo.get_deployment(s, deployment_id=row.deployment_id,
                                                                   organization_id=None)
        for row in rows:
            dep = deps[row.deployment_id]
            stopped = row.stopped_at is not None
            end = row.stopped_at if stopped else now
            span = end - row.billed_until
            if span <= 0 or (not stopped and span < self.settings.billing_interval_seconds):
                continue
            seconds = math.ceil(span - 1e-9) if stopped else int(span)
            if seconds <= 0:
                continue
            start, to = row.billed_until, (end if stopped else row.billed_until + seconds)
            with self.db.session() as s:
                if drepo.advance_billing(s, replica_id=row.id, from_=start, to=to):
                    add_replica_usage(s, self.settings, organization_id=dep.organization_id, deployment_id=dep.id,
                                      base_model=dep.base_model, hardware_profile=dep.hardware_profile,
                                      replica_id=row.id, start=start, seconds=seconds)
