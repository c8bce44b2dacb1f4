"""Deploying adapters: ``<job>`` or ``<job>/step-N`` → what the model name ``<job>`` serves (shared serving), or
what ``<job>#<deployment>`` serves on a dedicated deployment (each deployment tracks its own checkpoint); an
imported adapter (``adp-…`` or its name) serves as ``adp-…`` the same ways.

Owns: the plan (a dry run: what a deploy would do), loading onto the engine (which rejects adapters that do
not fit the base), the smoke generation, the deployment row, listing (imported adapters too, deployed or
not) and undeploying (an imported adapter deployed nowhere is deleted by the same call). Resolving the name
to a folder is ``tenfold.jobs.refs`` (``tenfold.adapters.imports`` for imports). Does not own: serving
requests (``tenfold.deployments.router``) or wire shapes.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from pathlib import Path

from tenfold.adapters import imports
from tenfold.context import Principal, ServerContext
from tenfold.deployments import service as deployment_service
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
from tenfold.store import adapter_repo, repo
from tenfold.store import deployment_repo as drepo
from tenfold.store.tables import AdapterDeployment, DeploymentAdapter, ImportedAdapter

Row = AdapterDeployment | DeploymentAdapter


@dataclass(frozen=True)
class Deployed:
    row: Row
    replaced: str | None  # what the model name served before ("<job>" or "<job>/step-N"), if anything


@dataclass(frozen=True)
class DeployPlan:
    source: refs.AdapterSource
    would_replace: str | None
    verify: bool
    deployment_id: str | None = None

    @property
    def model_name(self) -> str:
        return served_name(self.source.model, self.deployment_id)

    @property
    def message(self) -> str:
        shown = self.source.name if self.source.step is not None or self.source.job_id is None else (
            self.source.job_id + " (final)")
        return (f"Would serve {shown} as model '{self.model_name}'"
                + (f", replacing {self.would_replace}" if self.would_replace else "")
                + (", then run a smoke generation." if self.verify else " (no smoke generation)."))


def served_name(job_id: str, deployment_id: str | None) -> str:
    """The model name an adapter is called by: ``<job>`` on shared serving, ``<job>#<deployment>`` on one."""
    return f"{job_id}#{deployment_id}" if deployment_id else job_id


def split_name(model: str) -> tuple[str, str | None]:
    """``<job>#dep-…`` → (job, deployment); ``<job>`` → (job, None)."""
    job, _, dep = model.partition("#")
    return job, dep or None


async def smoke_test(c: ServerContext, route: Route) -> None:
    engine = await engine_for(c, route)
    prompter = prompter_for(c, route, load=False) or await asyncio.to_thread(prompter_for, c, route)
    prompt = prompter.chat_prompt([{"role": "user", "content": "Hello"}])
    req = GenerationRequest(request_id="verify-" + uuid.uuid4().hex[:8], prompt_token_ids=prompt,
                            sampling=SamplingParams(max_tokens=c.settings.verify_max_tokens, temperature=0.0),
                            adapter=route.adapter, organization="verify")
    produced = 0
    async for delta in engine.generate(req):
        produced = delta.completion_tokens  # the final delta carries the count
    if produced <= 0:
        raise InvalidRequest("Post-deploy smoke generation produced no tokens; nothing was deployed.")


def _current(s, p: Principal, job_id: str, deployment_id: str | None) -> Row | None:
    if deployment_id is None:
        return repo.get_adapter(s, model=job_id, organization_id=p.organization_id)
    return drepo.get_deployment_adapter(s, deployment_id=deployment_id, model=job_id)


def plan(c: ServerContext, p: Principal, *, model: str, verify: bool, deployment: str | None = None) -> DeployPlan:
    """What deploying ``model`` (on shared serving, or on ``deployment``) would do; loads and records nothing."""
    base, engine = c.settings.base_model, "tenfold"
    if deployment is not None:
        dep = deployment_service.active(c, p, deployment)
        base, engine = dep.base_model, dep.engine
    with c.db.session() as s:
        source = refs.resolve(s, organization_id=p.organization_id, name=model, param="model") if refs.is_ref(
            model) else None
    if source is None:
        source = imports.resolve(c, p, name=model, param="model")
    with c.db.session() as s:
        current = _current(s, p, source.model, deployment)
        previous = (refs.checkpoint_name(current.job_id, current.step) or current.model) if current else None
    if source.base_model != base:
        where = f"deployment {deployment} serves" if deployment else "this server serves"
        raise InvalidRequest(f"{source.model} was trained on '{source.base_model}', but {where} '{base}'. "
                             "Deploy it where its base model is served.", param="model", code="base_model_mismatch")
    if engine == "vllm":
        _check_vllm_rank(source.path, c.settings.vllm_max_lora_rank)
    return DeployPlan(source, previous, verify, deployment)


def _check_vllm_rank(folder: str | Path, limit: int) -> None:
    """vLLM replicas start with a fixed largest LoRA rank (``--max-lora-rank``); a wider adapter is refused
    here with the setting to raise, before any replica is asked (replicas start with the new value)."""
    try:
        rank = imports.adapter_rank(json.loads((Path(folder) / "adapter_config.json").read_text()))
    except (OSError, ValueError, TypeError, AttributeError):
        return  # an unreadable config is reported by the replica's own load
    if rank > limit:
        raise InvalidRequest(f"The adapter's LoRA rank {rank} is above the largest rank this server's vLLM replicas "
                             f"accept ({limit}). Raise TENFOLD_VLLM_MAX_LORA_RANK to at least {rank} (replicas "
                             "started afterwards take it), or deploy a lower-rank adapter. Nothing was deployed.",
                             param="model", code="invalid_adapter")


async def deploy(c: ServerContext, p: Principal, *, model: str, verify: bool, deployment: str | None = None) -> Deployed:
    planned = await asyncio.to_thread(plan, c, p, model=model, verify=verify, deployment=deployment)
    source, previous = planned.source, planned.would_replace
    ref = AdapterRef(digest=source.digest, path=Path(source.path))
    route = Route(planned.model_name, source.base_model, ref, refs.checkpoint_name(source.job_id, source.step),
                  deployment_id=deployment)
    # On a deployment the adapter is checked on a healthy replica if one runs (a deployment scaled to zero is
    # not woken: its replicas load the adapter on its first request, and it is recorded as not verified).
    live = deployment is None or bool(c.deployments and (pool := c.deployments.pools.get(deployment))
                                       and pool.healthy())
    try:
        if live:
            await (await engine_for(c, route)).load_adapter(ref)
            if verify:
                await smoke_test(c, route)
    except AdapterError as e:
        raise InvalidRequest(f"Adapter cannot be served on {source.base_model}: {e}. Nothing was deployed.",
                             param="model", code="invalid_adapter") from None
    with c.db.session() as s:
        fields = dict(job_id=source.job_id, step=source.step, base_model=source.base_model, path=source.path,
                      digest=source.digest, verified=verify and live)
        if deployment is None:
            row: Row = repo.upsert_adapter(s, model=source.model, organization_id=p.organization_id, **fields)
        else:
            row = drepo.upsert_deployment_adapter(s, deployment_id=deployment, organization_id=p.organization_id,
                                                  model=source.model, **fields)
        return Deployed(row, previous)


@dataclass(frozen=True)
class Listed:
    """One entry of the adapter list: a deployment row, an imported adapter, or both (an import deployed on
    shared serving)."""

    row: Row | None  # None: an imported adapter deployed nowhere on shared serving
    imported: ImportedAdapter | None = None


def list_adapters(c: ServerContext, p: Principal) -> list[Listed]:
    with c.db.session() as s:
        shared = repo.list_adapters(s, organization_id=p.organization_id)
        dedicated = drepo.list_deployment_adapters(s, organization_id=p.organization_id)
    imported = {a.id: a for a in imports.list_imported(c, p)}
    out = [Listed(r, imported.pop(r.model, None)) for r in shared]
    out += [Listed(r, imported.get(r.model)) for r in dedicated]
    return out + [Listed(None, a) for a in imported.values()]


def _find(s, p: Principal, model: str) -> Row | None:
    job_id, deployment = split_name(model)
    if deployment is None:
        return repo.get_adapter(s, model=job_id, organization_id=p.organization_id)
    row = drepo.get_deployment_adapter(s, deployment_id=deployment, model=job_id)
    return row if row is not None and row.organization_id == p.organization_id else None


def _not_deployed(model: str):
    return not_found("deployed adapter", model, hint="See `tenfold adapters` for what is deployed.")


def get(c: ServerContext, p: Principal, *, model: str) -> Listed:
    with c.db.session() as s:
        row = _find(s, p, model)
        imported = adapter_repo.get_imported(s, organization_id=p.organization_id, key=split_name(model)[0])
    if row is None and (imported is None or "#" in model):
        raise _not_deployed(model)
    return Listed(row, imported)


def undeploy(c: ServerContext, p: Principal, *, model: str) -> str:
    """Undeploy ``model``; for an imported adapter deployed nowhere, delete it (files too). Returns what went:
    ``"undeployed"`` or ``"deleted"``."""
    with c.db.session() as s:
        row = _find(s, p, model)
        if row is not None:
            if isinstance(row, DeploymentAdapter):
                drepo.delete_deployment_adapters(s, deployment_id=row.deployment_id, model=row.model)
            else:
                repo.delete_adapter(s, row=row)
            return "undeployed"
    if "#" not in model:
        with c.db.session() as s:
            known = adapter_repo.get_imported(s, organization_id=p.organization_id, key=model) is not None
        if known:
            imports.delete(c, p, model)
            return "deleted"
    raise _not_deployed(model)
