"""Every status change of a fine-tuning job, with the event that records it.

Owns the state machine ``validating_files → queued → running → succeeded | failed | cancelled`` (and back
through ``resume``) and the claim protocol. A claim is a compare-and-set ``UPDATE … WHERE status=…`` on one
row, so exactly one worker wins on SQLite and PostgreSQL alike without dialect-specific locking. Jobs in
``validating_files`` are claimed the same way by a worker's validator (the status stays; ``worker_id`` and
``heartbeat_at`` hold the lease), and one whose validator stopped renewing its lease can be claimed again. A
running job whose heartbeat is older than the lease is requeued and resumes from its last checkpoint.
Does not own: what validation checks (``validate``), training (``worker``) or request parsing (``submit``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy.orm import Session

from tenfold.store import repo
from tenfold.store.db import Database
from tenfold.store.tables import FineTuningJob

ACTIVE = ("validating_files", "queued", "running")
TERMINAL = ("succeeded", "failed", "cancelled")


# ---- create, cancel, resume (requests) ------------------------------------------------------------

def create(s: Session, *, message: str, **fields) -> FineTuningJob:
    """Insert a job in ``validating_files`` with its creation event."""
    row = repo.create_job(s, status="validating_files", **fields)
    repo.add_event(s, job_id=row.id, message=message, data={"status": "validating_files"})
    s.flush()
    s.refresh(row)
    return row


def cancel(s: Session, *, job_id: str) -> bool:
    """Cancel a job that has not ended (the worker sees ``cancel_requested`` and stops the trainer)."""
    repo.update_job(s, job_id=job_id, cancel_requested=True)
    if not repo.finish_job(s, job_id=job_id, status="cancelled"):
        return False
    repo.add_event(s, job_id=job_id, message="Job cancelled by request. Saved checkpoints stay deployable.",
                   data={"status": "cancelled"})
    return True


def resume(s: Session, *, job: FineTuningJob, steps: list[int]) -> str | None:
    """Queue a failed or cancelled job again: ``queued`` when it had started training (it resumes from its
    newest checkpoint), else ``validating_files``. Returns the new status, or None if it changed meanwhile."""
    status = "queued" if job.started_at is not None else "validating_files"
    if not repo.requeue_job(s, job_id=job.id, from_statuses=("failed", "cancelled"), to_status=status):
        return None
    if status == "queued":
        where = f"its last checkpoint (step {steps[-1]})" if steps else "the start (it has no checkpoint)"
        message = f"Resume requested: the job is queued again and continues from {where}."
    else:
        message = "Resume requested: the job never started training, so its files are validated again."
    repo.add_event(s, job_id=job.id, message=message, data={"status": status})
    return status


# ---- validation (worker's validator) --------------------------------------------------------------

def _claim(db: Database, pick: Callable[[Session], str | None], take: Callable[[Session, str], bool]) -> str | None:
    for _ in range(5):  # another worker may win the race for the oldest job; try the next one
        with db.session() as s:
            job_id = pick(s)
            if job_id is None:
                return None
            if take(s, job_id):
                return job_id
    return None


def claim_validation(db: Database, *, worker_id: str, lease_seconds: float) -> str | None:
    """A ``validating_files`` job nobody (alive) validates, now held by this worker's validator."""
    stale_before = time.time() - lease_seconds
    return _claim(db, lambda s: repo.next_validating_job_id(s, stale_before=stale_before),
                  lambda s, job_id: repo.claim_validation(s, job_id=job_id, worker_id=worker_id,
                                                          stale_before=stale_before))


def renew_validation(db: Database, *, job_id: str, worker_id: str) -> bool:
    with db.session() as s:
        return repo.renew_validation(s, job_id=job_id, worker_id=worker_id)


def release_validations(db: Database, *, worker_id: str) -> None:
    """A stopping worker hands back the validations it did not finish, for another worker to take at once."""
    with db.session() as s:
        repo.release_validations(s, worker_id=worker_id)


def validated(s: Session, *, job_id: str, worker_id: str, events: list[tuple[str, str, dict]]) -> bool:
    """``validating_files → queued`` by the validator holding the job, with its ``(level, message, data)``
    events; False (nothing written) when the job was cancelled or taken over meanwhile."""
    if not repo.finish_validation(s, job_id=job_id, worker_id=worker_id):
        return False
    for level, message, data in events:
        repo.add_event(s, job_id=job_id, level=level, message=message, data=data)
    repo.add_event(s, job_id=job_id, message="Job queued.", data={"status": "queued"})
    return True


# ---- training (worker) ----------------------------------------------------------------------------

def claim_next(db: Database, *, worker_id: str) -> str | None:
    """A queued job, now ``running`` for this worker."""
    return _claim(db, repo.next_queued_job_id, lambda s, job_id: repo.claim_job(s, job_id=job_id, worker_id=worker_id))


def heartbeat(db: Database, *, job_id: str, worker_id: str) -> bool:
    """Refresh the lease; returns False when the job was cancelled (or taken over) meanwhile."""
    with db.session() as s:
        job = repo.get_job(s, job_id=job_id, organization_id=None)
        if job is None or job.status != "running" or job.worker_id != worker_id or job.cancel_requested:
            return False
        repo.update_job(s, job_id=job_id, heartbeat_at=time.time())
        return True


def _requeue(s: Session, *, job_id: str, message: str) -> None:
    repo.update_job(s, job_id=job_id, status="queued", worker_id=None)
    repo.add_event(s, job_id=job_id, level="warn", message=message, data={"status": "queued"})


def requeue_stale(db: Database, *, lease_seconds: float) -> list[str]:
    out = []
    with db.session() as s:
        for job in repo.stale_running_jobs(s, older_than=time.time() - lease_seconds):
            _requeue(s, job_id=job.id, message="The worker running this job stopped responding; requeued to "
                                               "resume from the last checkpoint.")
            out.append(job.id)
    return out


def release(db: Database, *, job_id: str, worker_id: str) -> None:
    """A worker shutting down cleanly hands its running job back at once (no lease to wait out)."""
    with db.session() as s:
        job = repo.get_job(s, job_id=job_id, organization_id=None)
        if job is not None and job.status == "running" and job.worker_id == worker_id:
            _requeue(s, job_id=job_id, message="The server stopped; the job is queued again and resumes from its "
                                               "last checkpoint when a worker is available.")


def succeed(s: Session, *, job_id: str, message: str, data: dict, **values) -> bool:
    """``running → succeeded`` with the final adapter's fields; False if the job had already ended."""
    if not repo.finish_job(s, job_id=job_id, status="succeeded", **values):
        return False
    repo.add_event(s, job_id=job_id, message=message, data={**data, "status": "succeeded"})
    return True


def fail(s: Session, *, job_id: str, code: str, message: str, param: str | None = None) -> bool:
    """Any active status → ``failed`` with an OpenAI-shaped ``error``; False if the job had already ended."""
    if not repo.finish_job(s, job_id=job_id, status="failed", error={"code": code, "message": message, "param": param}):
        return False
    repo.add_event(s, job_id=job_id, level="error", message=f"Job failed: {message}",
                   data={"status": "failed", "code": code, "param": param})
    return True
