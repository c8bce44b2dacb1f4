"""The database-backed job queue: claim, heartbeat, requeue of jobs whose worker died.

Owns: the claim protocol. A claim is a compare-and-set ``UPDATE … WHERE status='queued'`` on one row, so
exactly one worker wins on SQLite and PostgreSQL alike without dialect-specific locking. A running job
whose heartbeat is older than the lease is requeued and resumes from its last checkpoint. Jobs in
``validating_files`` are claimed the same way by a worker's validator (the status stays; ``worker_id`` and
``heartbeat_at`` hold the lease), and one whose validator stopped renewing its lease can be claimed again.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy.orm import Session

from tenfold.store import repo
from tenfold.store.db import Database


def _claim(db: Database, pick: Callable[[Session], str | None], take: Callable[[Session, str], bool]) -> str | None:
    for _ in range(5):  # another worker may win the race for the oldest job; try the next one
        with db.session() as s:
            job_id = pick(s)
            if job_id is None:
                return None
            if take(s, job_id):
                return job_id
    return None


def claim_next(db: Database, *, worker_id: str) -> str | None:
    """A queued job, now ``running`` for this worker."""
    return _claim(db, repo.next_queued_job_id, lambda s, job_id: repo.claim_job(s, job_id=job_id, worker_id=worker_id))


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


def heartbeat(db: Database, *, job_id: str, worker_id: str) -> bool:
    """Refresh the lease; returns False when the job was cancelled (or taken over) meanwhile."""
    with db.session() as s:
        job = repo.get_job(s, job_id=job_id, organization_id=None)
        if job is None or job.status != "running" or job.worker_id != worker_id or job.cancel_requested:
            return False
        repo.update_job(s, job_id=job_id, heartbeat_at=time.time())
        return True


def _requeue(s, *, job_id: str, message: str) -> None:
    repo.update_job(s, job_id=job_id, status="queued", worker_id=None)
    repo.add_event(s, job_id=job_id, level="warn", message=message)


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
