"""Queries over the store, one group of keyword-only functions per noun.

Owns: every read and write of ORM rows, organization scoping (a lookup for another organization's id
returns None, never the row), newest-first cursor pagination, the compare-and-set job claim. Does not own:
sessions (callers pass one from ``Database.session()``), wire shapes, or business rules beyond integrity.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any, TypeVar

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from tenfold.store.tables import (
    AdapterDeployment,
    ApiKey,
    Batch,
    BatchLine,
    Checkpoint,
    File,
    FineTuningJob,
    JobEvent,
    Organization,
    UsageRecord,
)

Row = TypeVar("Row")


def new_id(prefix: str, nbytes: int = 12) -> str:
    return f"{prefix}{secrets.token_hex(nbytes)}"


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def page(s: Session, stmt, model, *, limit: int, after: str | None, id_col: str = "id") -> tuple[list, bool]:
    """Newest first by ``seq``; ``after`` is the id of the last row of the previous page."""
    if after:
        pivot = s.scalar(select(model.seq).where(getattr(model, id_col) == after))
        if pivot is not None:
            stmt = stmt.where(model.seq < pivot)
    rows = list(s.scalars(stmt.order_by(model.seq.desc()).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


# ---- organizations and keys ----------------------------------------------------------------------

def create_organization(s: Session, *, name: str) -> Organization:
    org = Organization(id=new_id("org-", 8), name=name, created_at=time.time())
    s.add(org)
    s.flush()
    return org


def get_organization(s: Session, *, organization_id: str) -> Organization | None:
    return s.scalar(select(Organization).where(Organization.id == organization_id))


def count_organizations(s: Session) -> int:
    return len(list(s.scalars(select(Organization.seq).limit(1))))


def create_api_key(s: Session, *, organization_id: str, name: str = "", is_admin: bool = False) -> tuple[ApiKey, str]:
    """Returns the row and the secret, which is shown once and stored only as a hash."""
    secret = "tf-" + secrets.token_urlsafe(32)
    row = ApiKey(
        id=new_id("key-", 8), organization_id=organization_id, name=name, key_hash=hash_key(secret),
        key_hint=secret[:6] + "…" + secret[-4:], is_admin=is_admin, created_at=time.time(),
    )
    s.add(row)
    s.flush()
    return row, secret


def find_api_key(s: Session, *, secret: str) -> ApiKey | None:
    row = s.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(secret)))
    return row if row is not None and row.revoked_at is None else None


# ---- files ---------------------------------------------------------------------------------------

def create_file(s: Session, *, organization_id: str, file_id: str, filename: str, purpose: str, nbytes: int,
                storage_key: str, n_examples: int, data_format: str, n_tokens: int | None = None,
                max_example_tokens: int | None = None, tokenizer: str | None = None) -> File:
    row = File(id=file_id, organization_id=organization_id, filename=filename, purpose=purpose, bytes=nbytes,
               storage_key=storage_key, n_examples=n_examples, data_format=data_format, n_tokens=n_tokens,
               max_example_tokens=max_example_tokens, tokenizer=tokenizer, created_at=time.time())
    s.add(row)
    s.flush()
    return row


def get_file(s: Session, *, organization_id: str, file_id: str) -> File | None:
    return s.scalar(select(File).where(File.id == file_id, File.organization_id == organization_id))


def list_files(s: Session, *, organization_id: str, limit: int, after: str | None,
               purpose: str | None = None) -> tuple[list[File], bool]:
    stmt = select(File).where(File.organization_id == organization_id)
    if purpose:
        stmt = stmt.where(File.purpose == purpose)
    return page(s, stmt, File, limit=limit, after=after)


def delete_file(s: Session, *, row: File) -> None:
    s.delete(row)
    s.flush()


# ---- fine-tuning jobs ----------------------------------------------------------------------------

def create_job(s: Session, *, job_id: str, organization_id: str, api_key_id: str | None, model: str,
               training_file: str, validation_file: str | None, suffix: str | None, seed: int,
               spec: dict, hyperparameters: dict, status: str = "queued", metadata: dict | None = None
               ) -> FineTuningJob:
    row = FineTuningJob(
        id=job_id, organization_id=organization_id, api_key_id=api_key_id, model=model,
        training_file=training_file, validation_file=validation_file, suffix=suffix, seed=seed, status=status,
        spec=spec, hyperparameters=hyperparameters, metadata_=metadata, created_at=time.time(), step=0, attempt=0,
        cancel_requested=False,
    )
    s.add(row)
    s.flush()
    return row


def get_job(s: Session, *, job_id: str, organization_id: str | None) -> FineTuningJob | None:
    """``organization_id=None`` is for internal callers (the worker) only."""
    stmt = select(FineTuningJob).where(FineTuningJob.id == job_id)
    if organization_id is not None:
        stmt = stmt.where(FineTuningJob.organization_id == organization_id)
    return s.scalar(stmt)


def active_jobs(s: Session, *, organization_id: str) -> list[FineTuningJob]:
    return list(s.scalars(select(FineTuningJob).where(
        FineTuningJob.organization_id == organization_id,
        FineTuningJob.status.in_(("validating_files", "queued", "running")))))


def delete_job(s: Session, *, job_id: str) -> None:
    """The job and its events and checkpoints (its usage rows stay: the ledger keeps every charge)."""
    s.execute(delete(JobEvent).where(JobEvent.job_id == job_id))
    s.execute(delete(Checkpoint).where(Checkpoint.job_id == job_id))
    s.execute(delete(FineTuningJob).where(FineTuningJob.id == job_id))


def list_jobs(s: Session, *, organization_id: str, limit: int, after: str | None) -> tuple[list[FineTuningJob], bool]:
    stmt = select(FineTuningJob).where(FineTuningJob.organization_id == organization_id)
    return page(s, stmt, FineTuningJob, limit=limit, after=after)


def next_queued_job_id(s: Session) -> str | None:
    return s.scalar(select(FineTuningJob.id).where(FineTuningJob.status == "queued")
                    .order_by(FineTuningJob.seq).limit(1))


def claim_job(s: Session, *, job_id: str, worker_id: str) -> bool:
    """Compare-and-set ``queued → running``; exactly one worker wins on SQLite and PostgreSQL alike."""
    now = time.time()
    res = s.execute(
        update(FineTuningJob)
        .where(FineTuningJob.id == job_id, FineTuningJob.status == "queued")
        .values(status="running", worker_id=worker_id, heartbeat_at=now, started_at=now,
                attempt=FineTuningJob.attempt + 1)
    )
    return res.rowcount == 1


def _validation_claimable(stale_before: float):
    """A ``validating_files`` job nobody validates, or whose validator's lease ran out."""
    return (FineTuningJob.status == "validating_files") & (
        FineTuningJob.worker_id.is_(None) | (FineTuningJob.heartbeat_at < stale_before))


def next_validating_job_id(s: Session, *, stale_before: float) -> str | None:
    return s.scalar(select(FineTuningJob.id).where(_validation_claimable(stale_before))
                    .order_by(FineTuningJob.seq).limit(1))


def claim_validation(s: Session, *, job_id: str, worker_id: str, stale_before: float) -> bool:
    """Compare-and-set the validator of a ``validating_files`` job (the status stays)."""
    res = s.execute(update(FineTuningJob).where(FineTuningJob.id == job_id, _validation_claimable(stale_before))
                    .values(worker_id=worker_id, heartbeat_at=time.time()))
    return res.rowcount == 1


def _validated_by(job_id: str, worker_id: str):
    return ((FineTuningJob.id == job_id) & (FineTuningJob.status == "validating_files")
            & (FineTuningJob.worker_id == worker_id))


def renew_validation(s: Session, *, job_id: str, worker_id: str) -> bool:
    res = s.execute(update(FineTuningJob).where(_validated_by(job_id, worker_id)).values(heartbeat_at=time.time()))
    return res.rowcount == 1


def finish_validation(s: Session, *, job_id: str, worker_id: str) -> bool:
    """Compare-and-set ``validating_files → queued`` by the validator that holds the job; False when the job
    was cancelled or taken over meanwhile."""
    res = s.execute(update(FineTuningJob).where(_validated_by(job_id, worker_id))
                    .values(status="queued", worker_id=None, heartbeat_at=None))
    return res.rowcount == 1


def release_validations(s: Session, *, worker_id: str) -> None:
    s.execute(update(FineTuningJob).where(FineTuningJob.status == "validating_files",
                                          FineTuningJob.worker_id == worker_id).values(worker_id=None))


def update_job(s: Session, *, job_id: str, **values: Any) -> None:
    s.execute(update(FineTuningJob).where(FineTuningJob.id == job_id).values(**values))


def finish_job(s: Session, *, job_id: str, status: str, error: dict | None = None, **values: Any) -> bool:
    """Move a job that has not ended to a terminal status; a job already terminal stays as it is."""
    res = s.execute(
        update(FineTuningJob)
        .where(FineTuningJob.id == job_id, FineTuningJob.status.in_(("validating_files", "queued", "running")))
        .values(status=status, error=error, finished_at=time.time(), eta_seconds=None, **values)
    )
    return res.rowcount == 1


def requeue_job(s: Session, *, job_id: str, from_statuses: tuple[str, ...], to_status: str = "queued") -> bool:
    """Compare-and-set a terminal job back to ``to_status`` (resume): clears the error, cancel flag and worker."""
    res = s.execute(
        update(FineTuningJob)
        .where(FineTuningJob.id == job_id, FineTuningJob.status.in_(from_statuses))
        .values(status=to_status, error=None, finished_at=None, cancel_requested=False, worker_id=None,
                eta_seconds=None)
    )
    return res.rowcount == 1


def stale_running_jobs(s: Session, *, older_than: float) -> list[FineTuningJob]:
    return list(s.scalars(select(FineTuningJob).where(
        FineTuningJob.status == "running", FineTuningJob.heartbeat_at < older_than)))


# ---- events and checkpoints ----------------------------------------------------------------------

def add_event(s: Session, *, job_id: str, message: str, level: str = "info", type: str = "message",
              data: dict | None = None) -> JobEvent:
    row = JobEvent(id=new_id("ftevent-", 10), job_id=job_id, created_at=time.time(), level=level, type=type,
                   message=message, data=data)
    s.add(row)
    s.flush()
    return row


def list_events(s: Session, *, job_id: str, limit: int, after: str | None, ascending: bool = False
                ) -> tuple[list[JobEvent], bool]:
    stmt = select(JobEvent).where(JobEvent.job_id == job_id)
    if not ascending:
        return page(s, stmt, JobEvent, limit=limit, after=after)
    if after:
        pivot = s.scalar(select(JobEvent.seq).where(JobEvent.id == after))
        if pivot is not None:
            stmt = stmt.where(JobEvent.seq > pivot)
    rows = list(s.scalars(stmt.order_by(JobEvent.seq).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def list_metric_events(s: Session, *, job_id: str, limit: int = 100_000) -> list[JobEvent]:
    """A job's ``metrics`` events, oldest first (the series behind ``GET …/metrics``)."""
    return list(s.scalars(select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.type == "metrics")
                          .order_by(JobEvent.seq).limit(limit)))


def add_checkpoint(s: Session, *, job_id: str, step: int, path: str, digest: str, metrics: dict | None) -> Checkpoint:
    existing = get_checkpoint(s, job_id=job_id, step=step)
    if existing is not None:  # a resumed run re-announcing a step it already saved
        return existing
    row = Checkpoint(job_id=job_id, step=step, path=path, digest=digest, metrics=metrics, created_at=time.time())
    s.add(row)
    s.flush()
    return row


def get_checkpoint(s: Session, *, job_id: str, step: int) -> Checkpoint | None:
    return s.scalar(select(Checkpoint).where(Checkpoint.job_id == job_id, Checkpoint.step == step))


def list_checkpoints(s: Session, *, job_id: str) -> list[Checkpoint]:
    return list(s.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id).order_by(Checkpoint.step.desc())))


# ---- adapter deployments -------------------------------------------------------------------------

def get_adapter(s: Session, *, model: str, organization_id: str | None) -> AdapterDeployment | None:
    stmt = select(AdapterDeployment).where(AdapterDeployment.model == model)
    if organization_id is not None:
        stmt = stmt.where(AdapterDeployment.organization_id == organization_id)
    return s.scalar(stmt)


def upsert_adapter(s: Session, *, model: str, organization_id: str, job_id: str | None, step: int | None,
                   base_model: str, path: str, digest: str, verified: bool) -> AdapterDeployment:
    now = time.time()
    row = get_adapter(s, model=model, organization_id=organization_id)
    if row is None:
        row = AdapterDeployment(model=model, organization_id=organization_id, job_id=job_id, created_at=now,
                                step=step, base_model=base_model, path=path, digest=digest, verified=verified,
                                updated_at=now)
        s.add(row)
    else:
        row.step, row.path, row.digest, row.verified, row.updated_at = step, path, digest, verified, now
    s.flush()
    return row


def list_adapters(s: Session, *, organization_id: str) -> list[AdapterDeployment]:
    return list(s.scalars(select(AdapterDeployment).where(AdapterDeployment.organization_id == organization_id)
                          .order_by(AdapterDeployment.seq.desc())))


def delete_adapter(s: Session, *, row: AdapterDeployment) -> None:
    s.delete(row)
    s.flush()


# ---- usage ---------------------------------------------------------------------------------------

def add_usage(s: Session, **values: Any) -> UsageRecord:
    row = UsageRecord(id=new_id("usage-", 10), created_at=time.time(), **values)
    s.add(row)
    s.flush()
    return row


def list_usage(s: Session, *, organization_id: str, limit: int, after: str | None, model: str | None = None
               ) -> tuple[list[UsageRecord], bool]:
    stmt = select(UsageRecord).where(UsageRecord.organization_id == organization_id)
    if model:
        stmt = stmt.where(UsageRecord.model == model)
    return page(s, stmt, UsageRecord, limit=limit, after=after)


def usage_exists(s: Session, *, request_id: str) -> bool:
    return s.scalar(select(UsageRecord.seq).where(UsageRecord.request_id == request_id)) is not None


USAGE_COLUMNS = ("id", "request_id", "api_key_id", "endpoint", "model", "base_model", "adapter_digest", "checkpoint",
                 "deployment_id", "batch_id", "usage_type", "prompt_tokens", "cached_tokens", "completion_tokens",
                 "cost_micro_usd", "discount_bps", "started_at", "created_at", "accelerator_type",
                 "accelerator_seconds")


def usage_in_range(s: Session, *, organization_id: str, start: float, end: float, **filters: Any) -> list[Any]:
    """Ledger rows with ``start <= created_at < end`` (half-open, so adjacent ranges never overlap), oldest
    first, as light named tuples of ``USAGE_COLUMNS``. ``filters``: column → list of accepted values."""
    stmt = select(*(getattr(UsageRecord, c) for c in USAGE_COLUMNS)).where(
        UsageRecord.organization_id == organization_id, UsageRecord.created_at >= start, UsageRecord.created_at < end)
    for column, values in filters.items():
        if values:
            stmt = stmt.where(getattr(UsageRecord, column).in_(list(values)))
    return list(s.execute(stmt.order_by(UsageRecord.created_at, UsageRecord.seq)))


def spend_since(s: Session, *, organization_id: str, since: float) -> int:
    total = s.scalar(select(func.coalesce(func.sum(UsageRecord.cost_micro_usd), 0)).where(
        UsageRecord.organization_id == organization_id, UsageRecord.created_at >= since))
    return int(total or 0)


def set_spend_limit(s: Session, *, organization_id: str, limit_micro_usd: int | None) -> Organization | None:
    org = get_organization(s, organization_id=organization_id)
    if org is not None:
        org.monthly_spend_limit_micro_usd = limit_micro_usd
        s.flush()
    return org


# ---- batches -------------------------------------------------------------------------------------

BATCH_ACTIVE = ("validating", "in_progress", "finalizing", "cancelling")


def create_batch(s: Session, *, organization_id: str, api_key_id: str, endpoint: str, input_file_id: str,
                 completion_window: str, metadata: dict | None, expires_at: float) -> Batch:
    row = Batch(id=new_id("batch_", 12), organization_id=organization_id, api_key_id=api_key_id, endpoint=endpoint,
                input_file_id=input_file_id, completion_window=completion_window, status="validating",
                metadata_=metadata, total=0, completed=0, failed=0, created_at=time.time(), expires_at=expires_at)
    s.add(row)
    s.flush()
    return row


def get_batch(s: Session, *, batch_id: str, organization_id: str | None) -> Batch | None:
    """``organization_id=None`` is for the batch runner only."""
    stmt = select(Batch).where(Batch.id == batch_id)
    if organization_id is not None:
        stmt = stmt.where(Batch.organization_id == organization_id)
    return s.scalar(stmt)


def list_batches(s: Session, *, organization_id: str, limit: int, after: str | None) -> tuple[list[Batch], bool]:
    return page(s, select(Batch).where(Batch.organization_id == organization_id), Batch, limit=limit, after=after)


def active_batch_ids(s: Session) -> list[str]:
    return list(s.scalars(select(Batch.id).where(Batch.status.in_(BATCH_ACTIVE)).order_by(Batch.seq)))


def move_batch(s: Session, *, batch_id: str, from_status: tuple[str, ...], to_status: str, **values: Any) -> bool:
    """Compare-and-set a batch's status (and its ``<status>_at`` timestamp); False if it was not in ``from_status``."""
    res = s.execute(update(Batch).where(Batch.id == batch_id, Batch.status.in_(from_status))
                    .values(status=to_status, **values))
    return res.rowcount == 1


def add_batch_lines(s: Session, *, batch_id: str, custom_ids: list[str]) -> None:
    s.add_all([BatchLine(batch_id=batch_id, line_no=i, custom_id=c, status="pending")
               for i, c in enumerate(custom_ids)])
    s.flush()


def pending_batch_lines(s: Session, *, batch_id: str, limit: int) -> list[tuple[int, str]]:
    return list(s.execute(select(BatchLine.line_no, BatchLine.custom_id).where(
        BatchLine.batch_id == batch_id, BatchLine.status == "pending").order_by(BatchLine.line_no).limit(limit)))


def finish_batch_line(s: Session, *, batch_id: str, line_no: int, status: str, result: dict) -> bool:
    """``pending → completed|failed`` once, with its output line, and the batch's counts in the same
    transaction; False (and nothing written) if the line was already finished."""
    res = s.execute(update(BatchLine).where(BatchLine.batch_id == batch_id, BatchLine.line_no == line_no,
                                            BatchLine.status == "pending").values(status=status, result=result))
    if res.rowcount != 1:
        return False
    column = Batch.completed if status == "completed" else Batch.failed
    s.execute(update(Batch).where(Batch.id == batch_id).values({column: column + 1}))
    return True


def finished_batch_lines(s: Session, *, batch_id: str) -> list[BatchLine]:
    return list(s.scalars(select(BatchLine).where(BatchLine.batch_id == batch_id, BatchLine.status != "pending")
                          .order_by(BatchLine.line_no)))


def batch_usage(s: Session, *, batch_ids: list[str]) -> dict[str, tuple[int, int, int]]:
    """batch id → (prompt, cached, completion) tokens billed so far for its lines."""
    if not batch_ids:
        return {}
    rows = s.execute(select(UsageRecord.batch_id, func.sum(UsageRecord.prompt_tokens),
                            func.sum(UsageRecord.cached_tokens), func.sum(UsageRecord.completion_tokens))
                     .where(UsageRecord.batch_id.in_(batch_ids)).group_by(UsageRecord.batch_id))
    return {r[0]: (int(r[1] or 0), int(r[2] or 0), int(r[3] or 0)) for r in rows}
