"""Dedicated deployments as the API sees them: create, get, list, update, delete and undelete, scoped to
the caller's organization (another organization's deployment reads as missing, everywhere).

Owns: the checks that answer 4xx and change nothing (an unknown base model or hardware profile, limits and
targets that contradict each other, a deleted deployment, a delete with adapters attached and no
``force``), fetching the base model into the model cache at create (with ``hf_token`` once; never stored),
the per-deployment secret replicas require, the desired state the controller reconciles, and the view of a
deployment with its replicas. A deleted deployment is gone from get and list (``include_deleted`` lists it)
and can be undeleted for ``deployment_undelete_seconds``. Does not own: replicas (the controller) or
serving (``pool``).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from tenfold.context import Principal, ServerContext
from tenfold.deployments import vllm
from tenfold.deployments.profiles import check_profile, default_profile
from tenfold.errors import Conflict, InvalidRequest, NotFound, Unauthenticated, not_found
from tenfold.store import deployment_repo as drepo
from tenfold.store.tables import Deployment, DeploymentAdapter, DeploymentReplica

ENGINES = ("tenfold", "vllm")
DEFAULTS = {"min_replicas": 1, "max_replicas": 1, "target_rps": 10.0, "target_latency_p95_ms": 5000.0,
            "scale_down_window_s": 300.0}


@dataclass(frozen=True)
class DeploymentView:
    deployment: Deployment
    replicas: list[DeploymentReplica]
    adapters: list[DeploymentAdapter]
    in_flight: dict[str, int]  # replica id → requests in flight (this process's view)
    resident: dict[str, list[str]]  # replica id → job ids of the adapters it holds
    healthy: dict[str, bool]
    undelete_until: float | None


def _check_limits(min_replicas: int, max_replicas: int) -> None:
    if min_replicas > max_replicas:
        raise InvalidRequest(f"min_replicas ({min_replicas}) is above max_replicas ({max_replicas}); raise "
                             "max_replicas or lower min_replicas.", param="min_replicas")


def _gone(dep: Deployment, c: ServerContext) -> NotFound:
    until = (dep.deleted_at or time.time()) + c.settings.deployment_undelete_seconds
    if time.time() < until:
        hint = (f" It was deleted; undelete it with POST /v1/deployments/{dep.id}/undelete (`tenfold deployments "
                f"undelete {dep.id}`) until {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(until))}.")
    else:
        hint = " It was deleted and can no longer be undeleted; create a new one."
    return NotFound(f"No deployment with id '{dep.id}' is active.{hint}", code="deployment_not_found")


def _owned(s, c: ServerContext, p: Principal, deployment_id: str, *, allow_deleted: bool = False) -> Deployment:
    dep = drepo.get_deployment(s, deployment_id=deployment_id, organization_id=p.organization_id)
    if dep is None:
        raise not_found("deployment", deployment_id, hint="List yours with GET /v1/deployments.")
    if dep.state in ("DELETING", "DELETED") and not allow_deleted:
        raise _gone(dep, c)
    return dep


async def create(c: ServerContext, p: Principal, *, base_model: str, hardware_profile: str | None, min_replicas: int,
                 max_replicas: int, target_rps: float, target_latency_p95_ms: float, scale_down_window_s: float,
                 display_name: str | None, engine: str, hf_token: str | None) -> DeploymentView:
    from tenfold.models.registry import resolve_base_model

    profile = check_profile(hardware_profile or default_profile())
    _check_limits(min_replicas, max_replicas)
    if engine not in ENGINES:
        raise InvalidRequest(f"engine '{engine}' is not available; use one of: {', '.join(ENGINES)}.", param="engine")
    if engine == "vllm":
        vllm.launcher(c.settings)  # a 400 with the install command when vLLM is not installed
        await asyncio.to_thread(vllm.check_plugin, c.settings)  # and when it could not fetch adapters
    if c.deployments is not None and c.deployments.check_backend is not None:
        await asyncio.to_thread(c.deployments.check_backend)  # a Ray cluster that does not answer: 503, no row
    try:  # fetch (or convert) the weights into the model cache now, so replicas start from disk
        await asyncio.to_thread(resolve_base_model, base_model, models_dir=c.settings.models_dir, hf_token=hf_token)
    except ValueError as e:
        raise InvalidRequest(f"Base model '{base_model}' cannot be served: {e}.", param="base_model",
                             code="unknown_base_model") from None
    with c.db.session() as s:
        dep = drepo.create_deployment(
            s, organization_id=p.organization_id, display_name=display_name, base_model=base_model,
            hardware_profile=profile, engine=engine, min_replicas=min_replicas, max_replicas=max_replicas,
            target_rps=target_rps, target_latency_p95_ms=target_latency_p95_ms, scale_down_window_s=scale_down_window_s,
            state="CREATING", secret=secrets.token_urlsafe(32), desired_replicas=min_replicas)
    _kick(c, dep)
    return view(c, p, dep.id)


def _kick(c: ServerContext, dep: Deployment) -> None:
    if c.deployments is not None:
        c.deployments.pool(deployment_id=dep.id, organization_id=dep.organization_id, base_model=dep.base_model)
        c.deployments.kick.set()


def view(c: ServerContext, p: Principal, deployment_id: str, *, allow_deleted: bool = False) -> DeploymentView:
    with c.db.session() as s:
        dep = _owned(s, c, p, deployment_id, allow_deleted=allow_deleted)
        replicas = drepo.list_replicas(s, deployment_id=dep.id, live_only=True)
        adapters = drepo.list_deployment_adapters(s, deployment_id=dep.id)
    return _view(c, dep, replicas, adapters)


def _view(c: ServerContext, dep: Deployment, replicas: list[DeploymentReplica],
          adapters: list[DeploymentAdapter]) -> DeploymentView:
    pool = c.deployments.pools.get(dep.id) if c.deployments is not None else None
    clients = pool.replicas if pool is not None else {}
    names = {a.digest: a.model for a in adapters}
    undelete = (dep.deleted_at + c.settings.deployment_undelete_seconds) if dep.deleted_at else None
    return DeploymentView(
        dep, replicas, adapters, {r.id: clients[r.id].in_flight for r in replicas if r.id in clients},
        {r.id: sorted(names[d] for d in clients[r.id].adapters if d in names) for r in replicas if r.id in clients},
        {r.id: bool(r.id in clients and clients[r.id].healthy) for r in replicas}, undelete)


def list_views(c: ServerContext, p: Principal, *, limit: int, after: str | None, include_deleted: bool
               ) -> tuple[list[DeploymentView], bool]:
    with c.db.session() as s:
        rows, more = drepo.list_deployments(s, organization_id=p.organization_id, limit=limit, after=after,
                                            include_deleted=include_deleted)
        out = [_view(c, d, drepo.list_replicas(s, deployment_id=d.id, live_only=True),
                     drepo.list_deployment_adapters(s, deployment_id=d.id)) for d in rows]
    return out, more


def update(c: ServerContext, p: Principal, deployment_id: str, **changes) -> DeploymentView:
    """Limits, targets and the display name; a FAILED deployment is tried again."""
    changes = {k: v for k, v in changes.items() if v is not None}
    with c.db.session() as s:
        dep = _owned(s, c, p, deployment_id)
        lo = changes.get("min_replicas", dep.min_replicas)
        hi = changes.get("max_replicas", dep.max_replicas)
        _check_limits(lo, hi)
        values = dict(changes)
        values["desired_replicas"] = max(lo, min(hi, dep.desired_replicas))
        if values["desired_replicas"] != dep.desired_replicas:
            values["last_change_at"] = time.time()
        if dep.state == "FAILED":
            values.update(start_failures=0, failure_reason=None)
        values["state"] = "UPDATING" if dep.state != "CREATING" else "CREATING"
        drepo.update_deployment(s, deployment_id=dep.id, **values)
    _kick(c, dep)
    return view(c, p, deployment_id)


def delete(c: ServerContext, p: Principal, deployment_id: str, *, force: bool) -> DeploymentView:
    with c.db.session() as s:
        dep = _owned(s, c, p, deployment_id)
        attached = drepo.list_deployment_adapters(s, deployment_id=dep.id)
        if attached and not force:
            names = ", ".join(f"{a.model}#{dep.id}" for a in attached)
            raise Conflict(f"Deployment {dep.id} serves adapters: {names}. Detach them (`tenfold undeploy "
                           f"{attached[0].model}#{dep.id}`) or delete with force=true (`tenfold deployments delete "
                           f"{dep.id} --force`), which detaches them.", code="deployment_has_adapters")
        drepo.delete_deployment_adapters(s, deployment_id=dep.id)
        drepo.update_deployment(s, deployment_id=dep.id, state="DELETING", deleted_at=time.time(), desired_replicas=0,
                                last_change_at=time.time())
    _kick(c, dep)
    return view(c, p, deployment_id, allow_deleted=True)


def undelete(c: ServerContext, p: Principal, deployment_id: str) -> DeploymentView:
    with c.db.session() as s:
        dep = _owned(s, c, p, deployment_id, allow_deleted=True)
        if dep.state not in ("DELETING", "DELETED"):
            raise Conflict(f"Deployment {dep.id} is {dep.state}, not deleted.", code="deployment_not_deleted")
        if time.time() > (dep.deleted_at or 0) + c.settings.deployment_undelete_seconds:
            raise _gone(dep, c)
        drepo.update_deployment(s, deployment_id=dep.id, state="CREATING", deleted_at=None,
                                desired_replicas=dep.min_replicas, last_change_at=time.time(), start_failures=0,
                                failure_reason=None)
    _kick(c, dep)
    return view(c, p, deployment_id)


def active(c: ServerContext, p: Principal, deployment_id: str) -> Deployment:
    """The caller's deployment, for serving and attaching adapters: 404 when missing or deleted."""
    with c.db.session() as s:
        return _owned(s, c, p, deployment_id)


def adapter_for_replica(c: ServerContext, *, secret: str, digest: str) -> tuple[str, list[tuple[str, Path]]]:
    """(archive root name, files) of adapter ``digest`` for a replica of the deployment whose secret this is,
    when the adapter is one of that deployment's organization's: replicas on other machines fetch adapters
    this way, with their deployment's secret (never an organization's key), and get nothing else."""
    from tenfold.training.checkpoints import SERVING_FILES

    with c.db.session() as s:
        dep = drepo.deployment_by_secret(s, secret=secret) if secret else None
        if dep is None:
            raise Unauthenticated("Only a replica of a deployment may fetch adapters (its secret as the bearer "
                                  "token).")
        path = drepo.adapter_path_by_digest(s, organization_id=dep.organization_id, digest=digest)
    if path is None:
        raise NotFound(f"No adapter with digest {digest} belongs to the organization of deployment {dep.id}.",
                       code="adapter_not_found")
    folder = Path(path)
    return digest.replace(":", "-"), [(name, folder / name) for name in sorted(SERVING_FILES)
                                      if (folder / name).is_file()]
