"""Deploying adapters: ``<job>`` or ``<job>/step-N`` → what the model name ``<job>`` serves.

Owns: resolving a deploy target to a PEFT folder, the dry run, loading onto the engine (which rejects
adapters that do not fit the base), the smoke generation, and the deployment row. Undeploy.
Does not own: serving requests (``tenfold.deployments.router``).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from tenfold.api.deps import Principal, ServerContext
from tenfold.api.errors import APIError, bad_request, not_found
from tenfold.api.serialize import adapter_obj, checkpoint_name
from tenfold.engine.types import AdapterError, AdapterRef, GenerationRequest, SamplingParams
from tenfold.store import repo

_TARGET = re.compile(r"^(?P<job>ftjob-[A-Za-z0-9]+)(?:/step-(?P<step>\d+))?$")


@dataclass(frozen=True)
class Target:
    job_id: str
    step: int | None
    base_model: str
    path: str
    digest: str


def parse_target(model: str) -> tuple[str, int | None]:
    m = _TARGET.match(model.strip())
    if not m:
        raise bad_request(f"Cannot deploy '{model}': expected a job id (ftjob-…) or a checkpoint "
                          "(ftjob-…/step-N).", param="model")
    return m["job"], int(m["step"]) if m["step"] else None


def resolve_target(c: ServerContext, p: Principal, model: str) -> Target:
    job_id, step = parse_target(model)
    with c.db.session() as s:
        job = repo.get_job(s, job_id=job_id, organization_id=p.organization_id)
        if job is None:
            raise not_found("fine-tuning job", job_id, hint="List your jobs with `tenfold jobs list`.")
        steps = sorted(ck.step for ck in repo.list_checkpoints(s, job_id=job_id))
        if step is None:
            if job.final_adapter_path is None:
                if steps:
                    cmds = ", ".join(f"`tenfold deploy {job_id}/step-{n}`" for n in steps[-3:])
                    msg = (f"Job {job_id} has no final adapter (status: {job.status}). Saved checkpoint steps: "
                           f"{', '.join(map(str, steps))}. Deploy one of them instead, e.g. {cmds}.")
                else:
                    msg = (f"Job {job_id} has no final adapter and no saved checkpoints yet (status: {job.status}). "
                           "Wait for it to finish, or train with checkpoint_every > 0 to get deployable steps.")
                raise APIError(409, msg, param="model", code="no_final_adapter")
            return Target(job_id, None, job.model, job.final_adapter_path, job.final_adapter_digest or "")
        ck = repo.get_checkpoint(s, job_id=job_id, step=step)
        if ck is None:
            have = ", ".join(map(str, steps)) or "none yet"
            raise APIError(404, f"Job {job_id} has no checkpoint at step {step}. Saved steps: {have}. "
                                f"See `tenfold checkpoints {job_id}`.", param="model", code="checkpoint_not_found")
        return Target(job_id, step, job.model, ck.path, ck.digest)


async def smoke_test(c: ServerContext, ref: AdapterRef) -> None:
    engine = c.engine
    prompt = engine.chat_prompt([{"role": "user", "content": "Hello"}])
    req = GenerationRequest(request_id="verify-" + uuid.uuid4().hex[:8], prompt_token_ids=prompt,
                            sampling=SamplingParams(max_tokens=c.settings.verify_max_tokens, temperature=0.0),
                            adapter=ref, cache_salt="verify")
    produced = 0
    async for delta in engine.generate(req):
        produced = delta.completion_tokens  # the final delta carries the count
    if produced <= 0:
        raise bad_request("Post-deploy smoke generation produced no tokens; nothing was deployed.")


async def deploy(c: ServerContext, p: Principal, *, model: str, dry_run: bool, verify: bool) -> dict:
    target = resolve_target(c, p, model)
    if target.base_model != c.settings.base_model:
        raise bad_request(f"Job {target.job_id} was trained on '{target.base_model}', but this server serves "
                          f"'{c.settings.base_model}'.", param="model")
    with c.db.session() as s:
        current = repo.get_adapter(s, model=target.job_id, organization_id=p.organization_id)
        previous = (checkpoint_name(current.job_id, current.step) or current.job_id) if current else None
    endpoint = c.settings.url + "/v1"
    if dry_run:
        would = {"id": target.job_id, "object": "adapter", "model": target.job_id, "base_model": target.base_model,
                 "checkpoint": checkpoint_name(target.job_id, target.step),
                 "source": checkpoint_name(target.job_id, target.step) or target.job_id, "status": "dry_run",
                 "endpoint": endpoint, "verified": False, "digest": target.digest, "replaced": None,
                 "would_replace": previous, "created_at": None, "updated_at": None,
                 "message": f"Would serve {checkpoint_name(target.job_id, target.step) or target.job_id + ' (final)'}"
                            f" as model '{target.job_id}'" + (f", replacing {previous}" if previous else "") +
                            (", then run a smoke generation." if verify else " (no smoke generation).")}
        return would
    ref = AdapterRef(digest=target.digest, path=Path(target.path))
    try:
        await c.engine.load_adapter(ref)
        if verify:
            await smoke_test(c, ref)
    except AdapterError as e:
        raise bad_request(f"Adapter cannot be served on {c.settings.base_model}: {e}. Nothing was deployed.",
                          param="model", code="invalid_adapter") from None
    with c.db.session() as s:
        row = repo.upsert_adapter(s, model=target.job_id, organization_id=p.organization_id, job_id=target.job_id,
                                  step=target.step, base_model=target.base_model, path=target.path,
                                  digest=target.digest, verified=verify)
        return adapter_obj(row, endpoint=endpoint, replaced=previous)


def undeploy(c: ServerContext, p: Principal, *, model: str) -> dict:
    with c.db.session() as s:
        row = repo.get_adapter(s, model=model, organization_id=p.organization_id)
        if row is None:
            raise not_found("deployed adapter", model, hint="See `tenfold adapters` for what is deployed.")
        repo.delete_adapter(s, row=row)
    return {"id": model, "object": "adapter", "deleted": True}
