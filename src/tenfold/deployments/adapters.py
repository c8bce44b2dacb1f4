"""Deploying adapters: ``<job>`` or ``<job>/step-N`` → what the model name ``<job>`` serves.

Owns: the plan (a dry run: what a deploy would do), loading onto the engine (which rejects adapters that do not fit the base), the smoke
generation, the deployment row, listing and undeploying. Resolving the name to a folder is
``tenfold.jobs.refs``. Does not own: serving requests (``tenfold.deployments.router``) or wire shapes.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from pathlib import Path

from tenfold.context import Principal, ServerContext
from tenfold.deployments.router import Route
from tenfold.engine.types import (
    AdapterError,
    AdapterRef,
    GenerationRequest,
    SamplingParams,
)
from tenfold.errors import InvalidRequest, not_found
from tenfold.inference.routing import engine_for, prompter_for
from tenfold.jobs import refs
from tenfold.store import repo
from tenfold.store.tables import AdapterDeployment


@dataclass(frozen=True)
class Deployed:
    row: AdapterDeployment
    replaced: str | None  # what the model name served before ("<job>" or "<job>/step-N"), if anything


@dataclass(frozen=True)
class DeployPlan:
    source: refs.AdapterSource
    would_replace: str | None
    verify: bool

    @property
    def message(self) -> str:
        shown = self.source.name if self.source.step is not None else self.source.job_id + " (final)"
        return (f"Would serve {shown} as model '{self.source.job_id}'"
                + (f", replacing {self.would_replace}" if self.would_replace else "")
                + (", then run a smoke generation." if self.verify else " (no smoke generation)."))


async def smoke_test(c: ServerContext, route: Route) -> None:
    engine = engine_for(c, route)
    prompt = prompter_for(c, route).chat_prompt([{"role": "user", "content": "Hello"}])
    req = GenerationRequest(request_id="verify-" + uuid.uuid4().hex[:8], prompt_token_ids=prompt,
                            sampling=SamplingParams(max_tokens=c.settings.verify_max_tokens, temperature=0.0),
                            adapter=route.adapter, organization="verify")
    produced = 0
    async for delta in engine.generate(req):
        produced = delta.completion_tokens  # the final delta carries the count
    if produced <= 0:
        raise InvalidRequest("Post-deploy smoke generation produced no tokens; nothing was deployed.")


def plan(c: ServerContext, p: Principal, *, model: str, verify: bool) -> DeployPlan:
    """What deploying ``model`` would do; loads and records nothing."""
    with c.db.session() as s:
        source = refs.resolve(s, organization_id=p.organization_id, name=model, param="model")
        current = repo.get_adapter(s, model=source.job_id, organization_id=p.organization_id)
        previous = (refs.checkpoint_name(current.job_id, current.step) or current.job_id) if current else None
    if source.base_model != c.settings.base_model:
        raise InvalidRequest(f"Job {source.job_id} was trained on '{source.base_model}', but this server serves "
                             f"'{c.settings.base_model}'.", param="model")
    return DeployPlan(source, previous, verify)


async def deploy(c: ServerContext, p: Principal, *, model: str, verify: bool) -> Deployed:
    planned = await asyncio.to_thread(plan, c, p, model=model, verify=verify)  # database: off the event loop
    source, previous = planned.source, planned.would_replace
    ref = AdapterRef(digest=source.digest, path=Path(source.path))
    route = Route(source.job_id, source.base_model, ref, refs.checkpoint_name(source.job_id, source.step))
    try:
        await engine_for(c, route).load_adapter(ref)
        if verify:
            await smoke_test(c, route)
    except AdapterError as e:
        raise InvalidRequest(f"Adapter cannot be served on {c.settings.base_model}: {e}. Nothing was deployed.",
                             param="model", code="invalid_adapter") from None
    with c.db.session() as s:
        row = repo.upsert_adapter(s, model=source.job_id, organization_id=p.organization_id, job_id=source.job_id,
                                  step=source.step, base_model=source.base_model, path=source.path,
                                  digest=source.digest, verified=verify)
        return Deployed(row, previous)


def list_adapters(c: ServerContext, p: Principal) -> list[AdapterDeployment]:
    with c.db.session() as s:
        return repo.list_adapters(s, organization_id=p.organization_id)


def get(c: ServerContext, p: Principal, *, model: str) -> AdapterDeployment:
    with c.db.session() as s:
        row = repo.get_adapter(s, model=model, organization_id=p.organization_id)
    if row is None:
        raise not_found("deployed adapter", model, hint="See `tenfold adapters` for what is deployed.")
    return row


def undeploy(c: ServerContext, p: Principal, *, model: str) -> None:
    with c.db.session() as s:
        row = repo.get_adapter(s, model=model, organization_id=p.organization_id)
        if row is None:
            raise not_found("deployed adapter", model, hint="See `tenfold adapters` for what is deployed.")
        repo.delete_adapter(s, row=row)
