"""Reading and cancelling fine-tuning jobs as the API sees them: every read is scoped to the caller's
organization, so another organization's job is indistinguishable from a missing one.

Owns: get, list, events, checkpoints, the metrics series, cancel and delete (refused while the job runs, is
deployed anywhere, or is where an active job starts from; its files go, its usage rows stay). Does not own:
creating and resuming jobs (``submit``), status changes (``lifecycle``) or wire shapes.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from sqlalchemy.orm import Session

from tenfold.context import Principal, ServerContext
from tenfold.errors import Conflict, not_found
from tenfold.jobs import lifecycle, metrics, refs
from tenfold.store import deployment_repo as drepo
from tenfold.store import repo
from tenfold.store.tables import Checkpoint, FineTuningJob, JobEvent


@dataclass(frozen=True)
class JobView:
    job: FineTuningJob
    steps: list[int]  # saved checkpoint steps, ascending


def view(c: ServerContext, job: FineTuningJob) -> JobView:
    """A job row already read (e.g. as an action left it), with its saved steps."""
    with c.db.session() as s:
        return JobView(job, refs.saved_steps(s, job_id=job.id))


def _job(s: Session, p: Principal, job_id: str) -> FineTuningJob:
    row = repo.get_job(s, job_id=job_id, organization_id=p.organization_id)
    if row is None:
        raise not_found("fine-tuning job", job_id, hint="List your jobs with GET /v1/fine_tuning/jobs.")
    return row


def get(c: ServerContext, p: Principal, job_id: str) -> JobView:
    with c.db.session() as s:
        return JobView(_job(s, p, job_id), refs.saved_steps(s, job_id=job_id))


def list_jobs(c: ServerContext, p: Principal, *, limit: int, after: str | None) -> tuple[list[JobView], bool]:
    with c.db.session() as s:
        rows, more = repo.list_jobs(s, organization_id=p.organization_id, limit=limit, after=after)
        return [JobView(r, refs.saved_steps(s, job_id=r.id)) for r in rows], more


def cancel(c: ServerContext, p: Principal, job_id: str) -> JobView:
    """Cancel a job that has not ended; a job that has ended is returned as it is."""
    with c.db.session() as s:
        row = _job(s, p, job_id)
        if row.status in lifecycle.ACTIVE:
            lifecycle.cancel(s, job_id=job_id)
        s.expire_all()
        return JobView(_job(s, p, job_id), refs.saved_steps(s, job_id=job_id))


def delete(c: ServerContext, p: Principal, job_id: str) -> None:
    """Delete a job that has ended and serves nowhere, with its checkpoints and files; its usage rows stay."""
    with c.db.session() as s:
        job = _job(s, p, job_id)
        if job.status in lifecycle.ACTIVE:
            raise Conflict(f"Job {job_id} is {job.status}; cancel it first "
                           f"(POST /v1/fine_tuning/jobs/{job_id}/cancel).", code="job_active")
        serving = [job_id] if repo.get_adapter(s, model=job_id, organization_id=p.organization_id) else []
        serving += [f"{a.model}#{a.deployment_id}" for a in
                    drepo.list_deployment_adapters(s, organization_id=p.organization_id) if a.job_id == job_id]
        if serving:
            raise Conflict(f"Job {job_id} is deployed as {', '.join(serving)}; undeploy it first (`tenfold undeploy "
                           f"{serving[0]}`).", code="job_deployed")
        users = [j.id for j in repo.active_jobs(s, organization_id=p.organization_id)
                 if str((j.spec or {}).get("from_checkpoint") or "").split("/")[0] == job_id]
        if users:
            raise Conflict(f"Job {job_id} is where {', '.join(users)} starts from (from_checkpoint); wait for it or "
                           "cancel it first.", code="job_in_use")
        output = (job.spec or {}).get("output_dir")
        repo.delete_job(s, job_id=job_id)
    if output:
        shutil.rmtree(output, ignore_errors=True)


def events(c: ServerContext, p: Principal, job_id: str, *, limit: int, after: str | None, ascending: bool
           ) -> tuple[list[JobEvent], bool]:
    with c.db.session() as s:
        _job(s, p, job_id)
        return repo.list_events(s, job_id=job_id, limit=limit, after=after, ascending=ascending)


def checkpoints(c: ServerContext, p: Principal, job_id: str) -> list[Checkpoint]:
    with c.db.session() as s:
        _job(s, p, job_id)
        return repo.list_checkpoints(s, job_id=job_id)


def metric_series(c: ServerContext, p: Principal, job_id: str) -> list[dict]:
    with c.db.session() as s:
        _job(s, p, job_id)
        return metrics.series(repo.list_metric_events(s, job_id=job_id))
