"""``/v1/fine_tuning/jobs``: create (or ``dry_run`` estimate), list, get, cancel, resume, delete, events, metrics,
checkpoints (OpenAI job shape), content (the weights as a streamed ``.tar.zst``); ``/v1/fine_tuning/evaluations``:
loss and exact match of the base model and adapters or checkpoints side by side."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from tenfold.api.contract import binary_body, errors
from tenfold.api.deps import PageParams, ctx, list_body, page_params, principal
from tenfold.api.serialize import checkpoint_obj, event_obj, job_obj
from tenfold.artifacts.archive import stream_tar_zst
from tenfold.context import Principal
from tenfold.jobs import evaluations, service, submit, weights
from tenfold.types.common import Deleted, ListResponse
from tenfold.types.fine_tuning import EvaluationCreate, JobCreate
from tenfold.types.jobs import (
    Evaluation,
    FineTuningJob,
    JobCheckpoint,
    JobEstimate,
    JobEvent,
    JobMetrics,
)

router = APIRouter(prefix="/v1/fine_tuning")


def _job(view: service.JobView) -> dict:
    return job_obj(view.job, view.steps)


@router.post("/jobs", response_model=FineTuningJob | JobEstimate, responses=errors(400, 401, 404, 409))
def create(request: Request, body: JobCreate, p: Principal = Depends(principal)) -> dict:
    out = submit.create_job(ctx(request), p, body)
    return out if isinstance(out, dict) else job_obj(out)


@router.get("/jobs", response_model=ListResponse[FineTuningJob], responses=errors(400, 401))
def list_jobs(request: Request, page: PageParams = Depends(page_params), p: Principal = Depends(principal)) -> dict:
    views, more = service.list_jobs(ctx(request), p, limit=page.limit, after=page.after)
    return list_body([_job(v) for v in views], more)


@router.get("/jobs/{job_id}", response_model=FineTuningJob, responses=errors(401, 404))
def get_job(request: Request, job_id: str, p: Principal = Depends(principal)) -> dict:
    return _job(service.get(ctx(request), p, job_id))


@router.delete("/jobs/{job_id}", response_model=Deleted, responses=errors(401, 404, 409))
def delete(request: Request, job_id: str, p: Principal = Depends(principal)) -> dict:
    """Delete an ended job that serves nowhere: its checkpoints and files go, its usage rows stay."""
    service.delete(ctx(request), p, job_id)
    return {"id": job_id, "object": "fine_tuning.job", "deleted": True}


@router.get("/jobs/{job_id}/content", response_class=StreamingResponse,
            responses={**binary_body("application/zstd", "A .tar.zst archive of the weights: a PEFT adapter folder, "
                                                          "or with checkpoint_type=merged a full model folder."),
                       **errors(400, 401, 404, 409)})
def content(request: Request, job_id: str,
            checkpoint_step: int | None = Query(None, ge=0, description="A saved step (default: the final adapter, "
                                                                       "else the newest checkpoint)."),
            checkpoint_type: Literal["default", "merged", "adapter"] = Query(
                "default", description="adapter (the PEFT folder; what default means for LoRA jobs) or merged "
                                       "(the base model with the adapter merged in)."),
            p: Principal = Depends(principal)) -> StreamingResponse:
    d = weights.download(ctx(request), p, job_id, checkpoint_step=checkpoint_step, checkpoint_type=checkpoint_type)
    return StreamingResponse(stream_tar_zst(d.files, root=d.name), media_type="application/zstd",
                             headers={"Content-Disposition": f'attachment; filename="{d.name}.tar.zst"'})


@router.post("/jobs/{job_id}/cancel", response_model=FineTuningJob, responses=errors(401, 404))
def cancel(request: Request, job_id: str, p: Principal = Depends(principal)) -> dict:
    return _job(service.cancel(ctx(request), p, job_id))


@router.post("/jobs/{job_id}/resume", response_model=FineTuningJob, responses=errors(401, 404, 409))
def resume(request: Request, job_id: str, p: Principal = Depends(principal)) -> dict:
    """Queue it again; the answer is the job as resuming left it (``queued``), even if a worker claims it at once."""
    job = submit.resume_job(ctx(request), p, job_id)
    return _job(service.view(ctx(request), job))


@router.get("/jobs/{job_id}/metrics", response_model=JobMetrics, responses=errors(401, 404))
def metrics(request: Request, job_id: str, p: Principal = Depends(principal)) -> dict:
    """The per-step series, oldest first; a resumed run's repeated steps keep their latest values."""
    data = service.metric_series(ctx(request), p, job_id)
    return {"object": "list", "job_id": job_id, "data": data, "has_more": False}


@router.get("/jobs/{job_id}/events", response_model=ListResponse[JobEvent], responses=errors(400, 401, 404))
def events(request: Request, job_id: str, page: PageParams = Depends(page_params),
           order: Literal["asc", "desc"] = Query("desc", description="asc: oldest first; desc: newest first."),
           p: Principal = Depends(principal)) -> dict:
    rows, more = service.events(ctx(request), p, job_id, limit=page.limit, after=page.after,
                                ascending=order == "asc")
    return list_body([event_obj(r) for r in rows], more)


@router.get("/jobs/{job_id}/checkpoints", response_model=ListResponse[JobCheckpoint],
            responses=errors(400, 401, 404))
def checkpoints(request: Request, job_id: str, page: PageParams = Depends(page_params),
                p: Principal = Depends(principal)) -> dict:
    data = [checkpoint_obj(r) for r in service.checkpoints(ctx(request), p, job_id)]
    if page.after:
        ids = [d["id"] for d in data]
        data = data[ids.index(page.after) + 1:] if page.after in ids else data
    return list_body(data[: page.limit], len(data) > page.limit)


@router.post("/evaluations", response_model=Evaluation, responses=errors(400, 401, 404, 409))
def evaluate(request: Request, body: EvaluationCreate, p: Principal = Depends(principal)) -> dict:
    out = evaluations.evaluate(ctx(request), p, models=body.models, examples=body.examples,
                               max_examples=body.max_examples, max_new_tokens=body.max_new_tokens)
    return {"object": "fine_tuning.evaluation", "base_model": out.base_model, "n_examples": out.n_examples,
            "data": out.results}
