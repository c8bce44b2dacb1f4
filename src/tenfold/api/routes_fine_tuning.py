"""``/v1/fine_tuning/jobs``: create (or ``dry_run`` estimate), list, get, cancel, resume, events, metrics,
checkpoints (OpenAI job shape); ``/v1/fine_tuning/evaluations``: loss and exact match of the base model and
adapters or checkpoints side by side."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request

from tenfold.api.deps import PageParams, Principal, ctx, list_body, page_params, principal
from tenfold.api.errors import not_found
from tenfold.api.serialize import checkpoint_obj, event_obj, job_obj
from tenfold.jobs import submit
from tenfold.store import repo
from tenfold.types.fine_tuning import EvaluationCreate, JobCreate

router = APIRouter(prefix="/v1/fine_tuning")


def _job(s, job_id: str, p: Principal):
    row = repo.get_job(s, job_id=job_id, organization_id=p.organization_id)
    if row is None:
        raise not_found("fine-tuning job", job_id, hint="List your jobs with GET /v1/fine_tuning/jobs.")
    return row


def _steps(s, job_id: str) -> list[int]:
    return sorted(c.step for c in repo.list_checkpoints(s, job_id=job_id))


@router.post("/jobs")
def create(request: Request, body: JobCreate, p: Principal = Depends(principal)) -> dict:
    out = submit.create_job(ctx(request), p, body)
    return out if isinstance(out, dict) else job_obj(out)


@router.get("/jobs")
def list_jobs(request: Request, page: PageParams = Depends(page_params), p: Principal = Depends(principal)) -> dict:
    with ctx(request).db.session() as s:
        rows, more = repo.list_jobs(s, organization_id=p.organization_id, limit=page.limit, after=page.after)
        return list_body([job_obj(r, _steps(s, r.id)) for r in rows], more)


@router.get("/jobs/{job_id}")
def get_job(request: Request, job_id: str, p: Principal = Depends(principal)) -> dict:
    with ctx(request).db.session() as s:
        return job_obj(_job(s, job_id, p), _steps(s, job_id))


@router.post("/jobs/{job_id}/cancel")
def cancel(request: Request, job_id: str, p: Principal = Depends(principal)) -> dict:
    with ctx(request).db.session() as s:
        row = _job(s, job_id, p)
        if row.status in ("validating_files", "queued", "running"):
            repo.update_job(s, job_id=job_id, cancel_requested=True)
            repo.finish_job(s, job_id=job_id, status="cancelled")
            repo.add_event(s, job_id=job_id, message="Job cancelled by request. Saved checkpoints stay deployable.")
        s.expire_all()
        return job_obj(_job(s, job_id, p), _steps(s, job_id))


@router.post("/jobs/{job_id}/resume")
def resume(request: Request, job_id: str, p: Principal = Depends(principal)) -> dict:
    c = ctx(request)
    row = submit.resume_job(c, p, job_id)
    with c.db.session() as s:
        return job_obj(row, _steps(s, job_id))


METRIC_KEYS = ("step", "total_steps", "epoch", "train_loss", "valid_loss", "learning_rate", "tokens",
               "tokens_per_second", "elapsed_seconds", "token_accuracy", "reward_margin", "reward_accuracy",
               "valid_mean_token_accuracy", "valid_reward_margin", "valid_reward_accuracy")


@router.get("/jobs/{job_id}/metrics")
def metrics(request: Request, job_id: str, p: Principal = Depends(principal)) -> dict:
    """The per-step series, oldest first; a resumed run's repeated steps keep their latest values."""
    with ctx(request).db.session() as s:
        _job(s, job_id, p)
        by_step: dict[int, dict] = {}
        for event in repo.list_metric_events(s, job_id=job_id):
            data = event.data or {}
            if "step" in data:
                by_step[int(data["step"])] = {k: data[k] for k in METRIC_KEYS if data.get(k) is not None}
        data = [by_step[k] for k in sorted(by_step)]
        return {"object": "list", "job_id": job_id, "data": data, "has_more": False}


@router.get("/jobs/{job_id}/events")
def events(request: Request, job_id: str, page: PageParams = Depends(page_params),
           order: str = Query("desc", pattern="^(asc|desc)$"), p: Principal = Depends(principal)) -> dict:
    with ctx(request).db.session() as s:
        _job(s, job_id, p)
        rows, more = repo.list_events(s, job_id=job_id, limit=page.limit, after=page.after,
                                      ascending=order == "asc")
        return list_body([event_obj(r) for r in rows], more)


@router.get("/jobs/{job_id}/checkpoints")
def checkpoints(request: Request, job_id: str, page: PageParams = Depends(page_params),
                p: Principal = Depends(principal)) -> dict:
    with ctx(request).db.session() as s:
        _job(s, job_id, p)
        rows = repo.list_checkpoints(s, job_id=job_id)
        data = [checkpoint_obj(r) for r in rows]
        if page.after:
            ids = [d["id"] for d in data]
            data = data[ids.index(page.after) + 1:] if page.after in ids else data
        return list_body(data[: page.limit], len(data) > page.limit)


@router.post("/evaluations")
def evaluate(request: Request, body: EvaluationCreate, p: Principal = Depends(principal)) -> dict:
    from tenfold.api.errors import APIError, bad_request
    from tenfold.models.registry import resolve_base_model
    from tenfold.training.data import DatasetError
    from tenfold.training.evaluate import evaluate_models, parse_eval_rows

    c = ctx(request)
    base = c.settings.base_model
    try:
        rows = parse_eval_rows(body.examples)
    except DatasetError as e:
        raise bad_request(f"Invalid evaluation examples: {e}.", param="examples") from None
    rows = rows[: body.max_examples]
    adapters: list[tuple[str, str | None]] = []
    with c.db.session() as s:
        for name in body.models:
            if name == base:
                adapters.append((name, None))
                continue
            job_id, _, step = name.partition("/step-")
            job = repo.get_job(s, job_id=job_id, organization_id=p.organization_id)
            if job is None:
                raise APIError(404, f"'{name}' is neither the base model '{base}' nor one of your jobs or "
                                    "checkpoints (<job id> or <job id>/step-N).", param="models", code="not_found")
            if step:
                ckpt = repo.get_checkpoint(s, job_id=job_id, step=int(step)) if step.isdigit() else None
                if ckpt is None:
                    raise APIError(404, f"Job {job_id} has no checkpoint '{name}'.", param="models",
                                   code="not_found")
                adapters.append((name, ckpt.path))
            elif job.final_adapter_path:
                adapters.append((name, job.final_adapter_path))
            else:
                raise bad_request(f"Job {job_id} has no final adapter (status {job.status}); evaluate one of "
                                  "its checkpoints, <job id>/step-N.", param="models")
    path = resolve_base_model(base, models_dir=c.settings.models_dir)
    results = evaluate_models(path, adapters, rows, max_new_tokens=body.max_new_tokens)
    return {"object": "fine_tuning.evaluation", "base_model": base, "n_examples": len(rows), "data": results}
