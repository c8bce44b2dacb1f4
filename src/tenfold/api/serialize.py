"""Rows and service results → wire objects (OpenAI field names). The only place that knows both ORM rows
and wire shapes.

Owns: the JSON shape of files, jobs, events, checkpoints, adapter deployments, models, organizations, keys,
spend limits, usage records and batches.
"""

from __future__ import annotations

from tenfold.accounts import NewKey
from tenfold.billing.limits import SpendLimit
from tenfold.billing.pricing import usd
from tenfold.deployments.adapters import DeployPlan, served_name
from tenfold.deployments.catalog import ModelEntry
from tenfold.deployments.service import DeploymentView
from tenfold.jobs.refs import checkpoint_name
from tenfold.store.tables import (
    AdapterDeployment,
    Checkpoint,
    DeploymentAdapter,
    File,
    FineTuningJob,
    ImportedAdapter,
    JobEvent,
    Organization,
    UsageRecord,
)


def _t(x: float | None) -> int | None:
    return int(x) if x is not None else None


def file_obj(r: File) -> dict:
    return {"id": r.id, "object": "file", "bytes": r.bytes, "created_at": _t(r.created_at), "filename": r.filename,
            "purpose": r.purpose, "status": "processed", "status_details": None,
            "n_examples": r.n_examples, "format": r.data_format, "n_tokens": r.n_tokens,
            "max_example_tokens": r.max_example_tokens, "tokenizer": r.tokenizer}


def job_obj(r: FineTuningJob, checkpoints: list[int] | None = None) -> dict:
    hp = dict(r.hyperparameters or {})
    return {
        "id": r.id, "object": "fine_tuning.job", "model": r.model, "created_at": _t(r.created_at),
        "started_at": _t(r.started_at), "finished_at": _t(r.finished_at),
        "fine_tuned_model": r.id if r.status == "succeeded" else None,
        "organization_id": r.organization_id, "status": r.status, "error": r.error,
        "hyperparameters": hp,
        "method": _method(r, hp),
        "training_file": r.training_file, "validation_file": r.validation_file, "result_files": [],
        "trained_tokens": r.trained_tokens, "seed": r.seed, "suffix": r.suffix, "user_provided_suffix": r.suffix,
        "estimated_finish": _t(r.heartbeat_at + r.eta_seconds) if r.eta_seconds and r.heartbeat_at else None,
        "integrations": [{"type": "wandb", "wandb": w}] if (w := (r.spec or {}).get("wandb")) else [],
        "metadata": r.metadata_,
        "progress": {"step": r.step, "total_steps": r.total_steps, "loss": r.last_loss, "eta_seconds": r.eta_seconds},
        "checkpoints": [checkpoint_name(r.id, s) for s in (checkpoints or [])],
        "has_final_adapter": r.final_adapter_path is not None,
        "from_checkpoint": (r.spec or {}).get("from_checkpoint"),
    }


def _method(r: FineTuningJob, hp: dict) -> dict:
    kind = "dpo" if (r.spec or {}).get("method") == "dpo" else "supervised"
    return {"type": kind, kind: {"hyperparameters": hp}}


def event_obj(r: JobEvent) -> dict:
    return {"id": r.id, "object": "fine_tuning.job.event", "created_at": _t(r.created_at), "level": r.level,
            "message": r.message, "type": r.type, "data": r.data}


def checkpoint_obj(r: Checkpoint) -> dict:
    name = checkpoint_name(r.job_id, r.step)
    metrics = {"step": r.step, **(r.metrics or {})}
    return {"id": name, "object": "fine_tuning.job.checkpoint", "created_at": _t(r.created_at),
            "fine_tuned_model_checkpoint": name, "fine_tuning_job_id": r.job_id, "step_number": r.step,
            "metrics": metrics}


def adapter_obj(r: AdapterDeployment | DeploymentAdapter | None, *, endpoint: str,
                imported: ImportedAdapter | None = None, replaced: str | None = None) -> dict:
    """A deployment row (``r``), an imported adapter deployed nowhere (``r`` None), or both."""
    out: dict = {"object": "adapter", "endpoint": endpoint, "replaced": replaced}
    if r is not None:
        ckpt = checkpoint_name(r.job_id, r.step)
        deployment_id = getattr(r, "deployment_id", None)
        name = served_name(r.model, deployment_id)
        out |= {"id": name, "model": name, "deployment_id": deployment_id, "base_model": r.base_model,
                "checkpoint": ckpt, "source": ckpt or r.model, "created_at": _t(r.created_at),
                "updated_at": _t(r.updated_at), "status": "deployed", "verified": r.verified, "digest": r.digest}
    if imported is not None:
        if r is None:
            out |= {"id": imported.id, "model": imported.id, "deployment_id": None, "base_model": imported.base_model,
                    "checkpoint": None, "source": imported.id, "created_at": _t(imported.created_at),
                    "updated_at": _t(imported.created_at), "status": "imported", "verified": False,
                    "digest": imported.digest}
        out |= {"name": imported.name, "imported_from": imported.source, "rank": imported.rank,
                "target_modules": imported.target_modules, "bytes": imported.bytes}
    return out


def adapter_plan_obj(d: DeployPlan, *, endpoint: str) -> dict:
    src = d.source
    return {"object": "adapter.deploy_plan", "status": "dry_run", "would_serve_as": d.model_name, "source": src.name,
            "checkpoint": checkpoint_name(src.job_id, src.step), "base_model": src.base_model, "digest": src.digest,
            "endpoint": endpoint, "verify": d.verify, "would_replace": d.would_replace, "message": d.message}


def model_obj(m: ModelEntry) -> dict:
    return {"id": m.id, "object": "model", "created": m.created, "owned_by": m.owned_by, "root": m.root,
            "parent": m.parent, "checkpoint": m.checkpoint}


def organization_obj(org: Organization) -> dict:
    return {"id": org.id, "object": "organization", "name": org.name, "created_at": int(org.created_at)}


def api_key_obj(k: NewKey) -> dict:
    row = k.row
    return {"id": row.id, "object": "api_key", "organization_id": row.organization_id, "name": row.name,
            "is_admin": row.is_admin, "created_at": int(row.created_at), "key": k.secret,
            "note": "The key is shown only once; store it now."}


def spend_limit_obj(x: SpendLimit) -> dict:
    limit = x.limit_micro_usd
    return {"object": "organization.spend_limit", "organization_id": x.organization_id,
            "monthly_spend_limit_micro_usd": limit, "monthly_spend_limit_usd": usd(limit) if limit is not None else None,
            "spent_this_month_micro_usd": x.spent_this_month_micro_usd,
            "spent_this_month_usd": usd(x.spent_this_month_micro_usd)}


def deployment_obj(v: DeploymentView) -> dict:
    d = v.deployment
    replicas = [{"id": r.id, "object": "deployment.replica", "state": r.state, "healthy": v.healthy.get(r.id, False),
                 "pid": r.pid, "endpoint": r.endpoint, "placement": r.placement, "in_flight": v.in_flight.get(r.id, 0),
                 "adapters": v.resident.get(r.id, []), "started_at": int(r.started_at), "ready_at": _t(r.ready_at)}
                for r in v.replicas]
    return {"id": d.id, "object": "deployment", "display_name": d.display_name, "base_model": d.base_model,
            "hardware_profile": d.hardware_profile, "engine": d.engine, "min_replicas": d.min_replicas,
            "max_replicas": d.max_replicas, "target_rps": d.target_rps, "target_latency_p95_ms": d.target_latency_p95_ms,
            "scale_down_window_s": d.scale_down_window_s, "state": d.state, "failure_reason": d.failure_reason,
            "desired_replicas": d.desired_replicas, "replicas": replicas, "last_decision": d.last_decision,
            "adapters": [served_name(a.model, d.id) for a in v.adapters], "created_at": int(d.created_at),
            "updated_at": int(d.updated_at), "deleted_at": _t(d.deleted_at), "undelete_until": _t(v.undelete_until)}


def usage_obj(r: UsageRecord) -> dict:
    return {"object": "usage.record", "id": r.id, "created_at": _t(r.created_at),
            "organization_id": r.organization_id, "api_key_id": r.api_key_id, "request_id": r.request_id,
            "endpoint": r.endpoint, "model": r.model, "base_model": r.base_model, "adapter": r.adapter_digest,
            "checkpoint": r.checkpoint, "prompt_tokens": r.prompt_tokens, "cached_tokens": r.cached_tokens,
            "completion_tokens": r.completion_tokens, "cost_micro_usd": r.cost_micro_usd,
            "finish_reason": r.finish_reason, "usage_type": r.usage_type, "deployment_id": r.deployment_id,
            "batch_id": r.batch_id, "discount_bps": r.discount_bps, "accelerator_type": r.accelerator_type,
            "accelerator_seconds": r.accelerator_seconds}


def batch_obj(r, usage: tuple[int, int, int] | None = None) -> dict:
    """An OpenAI ``batch`` object from a ``tenfold.store.tables.Batch`` row and its billed (prompt, cached,
    completion) tokens."""
    prompt, cached, completion = usage or (0, 0, 0)
    return {"usage": {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": cached},
                      "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": 0},
                      "total_tokens": prompt + completion},
            "model": None, "id": r.id, "object": "batch", "endpoint": r.endpoint, "errors": r.errors,
            "input_file_id": r.input_file_id, "completion_window": r.completion_window, "status": r.status,
            "output_file_id": r.output_file_id, "error_file_id": r.error_file_id, "created_at": _t(r.created_at),
            "in_progress_at": _t(r.in_progress_at), "expires_at": _t(r.expires_at),
            "finalizing_at": _t(r.finalizing_at), "completed_at": _t(r.completed_at), "failed_at": _t(r.failed_at),
            "expired_at": _t(r.expired_at), "cancelling_at": _t(r.cancelling_at), "cancelled_at": _t(r.cancelled_at),
            "request_counts": {"total": r.total, "completed": r.completed, "failed": r.failed},
            "metadata": r.metadata_}
