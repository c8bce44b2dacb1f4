"""Naming a job's adapters and resolving a name to the folder on disk: ``<job>`` is the job's final
adapter, ``<job>/step-N`` one of its checkpoints.

Owns: the ``<job>[/step-N]`` syntax (``parse``, ``checkpoint_name``) and ``resolve``, the one place that
turns such a name into an ``AdapterSource`` (job, step, base model, folder, content digest) or an error that
lists the saved steps and says what to use instead. Deploying, continued fine-tuning (``from_checkpoint``)
and evaluation all resolve through it. Does not own: what callers do with the folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy.orm import Session

from tenfold.errors import Conflict, InvalidRequest, NotFound
from tenfold.store import repo

_REF = re.compile(r"^(?P<job>ftjob-[A-Za-z0-9]+)(?:/step-(?P<step>\d+))?$")


def checkpoint_name(job_id: str, step: int | None) -> str | None:
    """``<job>/step-N``, or None for a job's final adapter."""
    return f"{job_id}/step-{step}" if step is not None else None


@dataclass(frozen=True)
class AdapterSource:
    model: str  # the model name it serves under: the job id, or an imported adapter's adp-… id
    job_id: str | None  # None: an imported adapter
    step: int | None  # None: the final adapter
    base_model: str
    path: str
    digest: str

    @property
    def name(self) -> str:
        return checkpoint_name(self.job_id, self.step) or self.model  # an import has no steps


def is_ref(name: str) -> bool:
    """Whether ``name`` has the ``<job>[/step-N]`` form."""
    return _REF.match(name.strip()) is not None


def parse(name: str, *, param: str) -> tuple[str, int | None]:
    """``(job id, step or None)``; ``InvalidRequest`` naming ``param`` when ``name`` is neither form."""
    m = _REF.match(name.strip())
    if not m:
        raise InvalidRequest(f"'{name}' is not '<job id>' or '<job id>/step-<N>' (e.g. ftjob-…/step-20).", param=param)
    return m["job"], int(m["step"]) if m["step"] else None


def saved_steps(s: Session, *, job_id: str) -> list[int]:
    return sorted(ck.step for ck in repo.list_checkpoints(s, job_id=job_id))


def resolve(s: Session, *, organization_id: str, name: str, param: str) -> AdapterSource:
    """The adapter ``name`` designates among the organization's jobs."""
    job_id, step = parse(name, param=param)
    job = repo.get_job(s, job_id=job_id, organization_id=organization_id)
    if job is None:
        raise NotFound(f"No fine-tuning job with id '{job_id}' was found. List your jobs with `tenfold jobs list` "
                       "(GET /v1/fine_tuning/jobs).", param=param, code="fine_tuning_job_not_found")
    steps = saved_steps(s, job_id=job_id)
    if step is None:
        if job.final_adapter_path is None:
            if steps:
                cmds = ", ".join(f"`tenfold deploy {job_id}/step-{n}`" for n in steps[-3:])
                msg = (f"Job {job_id} has no final adapter (status: {job.status}). Saved checkpoint steps: "
                       f"{', '.join(map(str, steps))}. Use one of them instead, e.g. {job_id}/step-{steps[-1]} "
                       f"({cmds}).")
            else:
                msg = (f"Job {job_id} has no final adapter and no saved checkpoints yet (status: {job.status}). "
                       "Wait for it to finish, or train with checkpoint_every > 0 to get deployable steps.")
            raise Conflict(msg, param=param, code="no_final_adapter")
        return AdapterSource(job_id, job_id, None, job.model, job.final_adapter_path, job.final_adapter_digest or "")
    ck = repo.get_checkpoint(s, job_id=job_id, step=step)
    if ck is None:
        have = ", ".join(map(str, steps)) or "none yet"
        raise NotFound(f"Job {job_id} has no checkpoint at step {step}. Saved steps: {have}. "
                       f"See `tenfold checkpoints {job_id}`.", param=param, code="checkpoint_not_found")
    return AdapterSource(job_id, job_id, step, job.model, ck.path, ck.digest)
