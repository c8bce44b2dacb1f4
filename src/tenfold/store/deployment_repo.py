"""Queries over dedicated deployments, their replicas and attached adapters: keyword-only functions like
``repo``'s, apart because these nouns are many.

Owns: organization scoping of deployments (another organization's id reads as missing), the replica rows
with their billing watermark, and which checkpoint a job serves on each deployment. Does not own: sessions,
wire shapes, decisions, or the controller's lease (``lease_repo``).
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from tenfold.store.repo import new_id, page
from tenfold.store.tables import (
    Checkpoint,
    Deployment,
    DeploymentAdapter,
    DeploymentReplica,
    FineTuningJob,
    ImportedAdapter,
)

LIVE_REPLICA_STATES = ("STARTING", "READY")


# ---- deployments ------------------------------------------------------------------------------------

def create_deployment(s: Session, **values: Any) -> Deployment:
    now = time.time()
    row = Deployment(id=new_id("dep-", 8), created_at=now, updated_at=now, last_change_at=now, start_failures=0,
                     **values)
    s.add(row)
    s.flush()
    return row


def get_deployment(s: Session, *, deployment_id: str, organization_id: str | None) -> Deployment | None:
    """``organization_id`` None: any organization's (the controller)."""
    stmt = select(Deployment).where(Deployment.id == deployment_id)
    if organization_id is not None:
        stmt = stmt.where(Deployment.organization_id == organization_id)
    return s.scalar(stmt)


def list_deployments(s: Session, *, organization_id: str, limit: int, after: str | None,
                     include_deleted: bool = False) -> tuple[list[Deployment], bool]:
    stmt = select(Deployment).where(Deployment.organization_id == organization_id)
    if not include_deleted:
        stmt = stmt.where(Deployment.state != "DELETED")
    return page(s, stmt, Deployment, limit=limit, after=after)


def deployments_to_reconcile(s: Session) -> list[Deployment]:
    """Every deployment that has or may need replicas (not yet deleted)."""
    return list(s.scalars(select(Deployment).where(Deployment.state != "DELETED").order_by(Deployment.seq)))


def update_deployment(s: Session, *, deployment_id: str, **values: Any) -> None:
    s.execute(update(Deployment).where(Deployment.id == deployment_id).values(updated_at=time.time(), **values))


# ---- replicas ---------------------------------------------------------------------------------------

def add_replica(s: Session, *, deployment_id: str, started_at: float) -> DeploymentReplica:
    row = DeploymentReplica(id=new_id("rep-", 6), deployment_id=deployment_id, state="STARTING",
                            started_at=started_at, billed_until=started_at)
    s.add(row)
    s.flush()
    return row


def get_replica(s: Session, *, replica_id: str) -> DeploymentReplica | None:
    return s.scalar(select(DeploymentReplica).where(DeploymentReplica.id == replica_id))


def list_replicas(s: Session, *, deployment_id: str, live_only: bool = False) -> list[DeploymentReplica]:
    stmt = select(DeploymentReplica).where(DeploymentReplica.deployment_id == deployment_id)
    if live_only:
        stmt = stmt.where(DeploymentReplica.state.in_(LIVE_REPLICA_STATES))
    return list(s.scalars(stmt.order_by(DeploymentReplica.seq)))


def unbilled_replicas(s: Session) -> list[DeploymentReplica]:
    """Replicas whose time may still need billing: live ones, and stopped ones billed short of their stop."""
    return list(s.scalars(select(DeploymentReplica).where(
        DeploymentReplica.state.in_(LIVE_REPLICA_STATES)
        | (DeploymentReplica.stopped_at.is_not(None) & (DeploymentReplica.billed_until < DeploymentReplica.stopped_at)))))


def deployment_by_secret(s: Session, *, secret: str) -> Deployment | None:
    """The live deployment whose replicas authenticate with ``secret`` (for the replicas' adapter fetches)."""
    return s.scalar(select(Deployment).where(Deployment.secret == secret,
                                             Deployment.state.not_in(("DELETING", "DELETED"))))


def adapter_path_by_digest(s: Session, *, organization_id: str, digest: str) -> str | None:
    """The folder of one of the organization's adapters with content ``digest`` (a job's checkpoint or final
    adapter, or an imported adapter), or None."""
    candidates = (
        select(DeploymentAdapter.path).where(DeploymentAdapter.organization_id == organization_id,
                                             DeploymentAdapter.digest == digest),
        select(ImportedAdapter.path).where(ImportedAdapter.organization_id == organization_id,
                                           ImportedAdapter.digest == digest),
        select(FineTuningJob.final_adapter_path).where(
            FineTuningJob.organization_id == organization_id, FineTuningJob.final_adapter_digest == digest),
        select(Checkpoint.path).join(FineTuningJob, FineTuningJob.id == Checkpoint.job_id)
        .where(FineTuningJob.organization_id == organization_id, Checkpoint.digest == digest),
    )
    for stmt in candidates:
        path = s.scalar(stmt.limit(1))
        if path:
            return path
    return None


def update_replica(s: Session, *, replica_id: str, **values: Any) -> None:
    s.execute(update(DeploymentReplica).where(DeploymentReplica.id == replica_id).values(**values))


def advance_billing(s: Session, *, replica_id: str, from_: float, to: float) -> bool:
    """Compare-and-set the replica's billing watermark from ``from_`` to ``to``: False when another writer
    moved it first (so the same seconds are never billed twice)."""
    res = s.execute(update(DeploymentReplica).where(DeploymentReplica.id == replica_id,
                                                    DeploymentReplica.billed_until == from_)
                    .values(billed_until=to))
    return res.rowcount == 1


# ---- adapters attached to a deployment -----------------------------------------------------------------

def upsert_deployment_adapter(s: Session, *, deployment_id: str, organization_id: str, model: str,
                              job_id: str | None,
                              step: int | None, base_model: str, path: str, digest: str,
                              verified: bool) -> DeploymentAdapter:
    now = time.time()
    row = get_deployment_adapter(s, deployment_id=deployment_id, model=model)
    if row is None:
        row = DeploymentAdapter(deployment_id=deployment_id, organization_id=organization_id, model=model,
                                job_id=job_id, step=step, base_model=base_model, path=path, digest=digest,
                                verified=verified, created_at=now, updated_at=now)
        s.add(row)
    else:
        row.step, row.path, row.digest, row.verified, row.updated_at = step, path, digest, verified, now
    s.flush()
    return row


def get_deployment_adapter(s: Session, *, deployment_id: str, model: str) -> DeploymentAdapter | None:
    return s.scalar(select(DeploymentAdapter).where(DeploymentAdapter.deployment_id == deployment_id,
                                                    DeploymentAdapter.model == model))


def list_deployment_adapters(s: Session, *, deployment_id: str | None = None,
                             organization_id: str | None = None) -> list[DeploymentAdapter]:
    stmt = select(DeploymentAdapter)
    if deployment_id is not None:
        stmt = stmt.where(DeploymentAdapter.deployment_id == deployment_id)
    if organization_id is not None:
        stmt = stmt.where(DeploymentAdapter.organization_id == organization_id)
    return list(s.scalars(stmt.order_by(DeploymentAdapter.seq.desc())))


def delete_deployment_adapters(s: Session, *, deployment_id: str, model: str | None = None) -> int:
    stmt = delete(DeploymentAdapter).where(DeploymentAdapter.deployment_id == deployment_id)
    if model is not None:
        stmt = stmt.where(DeploymentAdapter.model == model)
    return s.execute(stmt).rowcount
