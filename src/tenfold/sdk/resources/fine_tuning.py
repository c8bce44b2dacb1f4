"""``client.fine_tuning``: ``jobs`` (``/v1/fine_tuning/jobs``, with ``jobs.checkpoints``) and
``evaluations`` (``POST /v1/fine_tuning/evaluations``).

Owns: the job create body (OpenAI's fields, ``integrations`` included, plus ``from_checkpoint`` and seed
002's ``training_method`` and ``wandb_api_key``; ``method`` as OpenAI's object or the short names
"sft"/"supervised"/"dpo"), ``estimate`` (the same body with ``dry_run: true``), retrieve, list,
cancel, resume, list_events, metrics, ``wait`` (blocking in ``Jobs``, a coroutine in ``AsyncJobs``), the
checkpoints list, and evaluations (loss and exact match of the base model and adapters or checkpoints, side
by side). Does not own: running training (the server's workers) or the polling loops (``job_events``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tenfold.sdk._request import Resource, compact, segment
from tenfold.sdk.resources import downloads
from tenfold.sdk.resources.job_events import async_wait_for_job, wait_for_job
from tenfold.types.common import Deleted, ListResponse
from tenfold.types.jobs import (
    Evaluation,
    FineTuningJob,
    JobCheckpoint,
    JobEstimate,
    JobEvent,
    JobMetrics,
)

EVALUATION_MIN_TIMEOUT = 600.0  # scoring runs on the server and may take minutes
_METHOD_TYPES = {"sft": "supervised", "supervised": "supervised", "dpo": "dpo"}


def job_body(*, model: str, training_file: str, hyperparameters: Mapping[str, Any] | None,
             method: str | Mapping[str, Any] | None, suffix: str | None, seed: int | None,
             validation_file: str | None, metadata: Mapping[str, str] | None,
             from_checkpoint: str | None, training_method: str | None = None,
             integrations: Sequence[Mapping[str, Any]] | None = None,
             wandb_api_key: str | None = None) -> dict[str, Any]:
    if isinstance(method, str):
        if method not in _METHOD_TYPES:
            raise ValueError(f"method must be one of {', '.join(_METHOD_TYPES)} or an OpenAI method object, "
                             f"not {method!r}")
        method = {"type": _METHOD_TYPES[method]}
    return compact({"model": model, "training_file": training_file,
                    "hyperparameters": dict(hyperparameters) if hyperparameters else None,
                    "method": dict(method) if method else None, "suffix": suffix, "seed": seed,
                    "validation_file": validation_file, "metadata": dict(metadata) if metadata else None,
                    "from_checkpoint": from_checkpoint, "training_method": training_method,
                    "integrations": [dict(i) for i in integrations] if integrations else None,
                    "wandb_api_key": wandb_api_key})


def _path(job_id: str, tail: str = "") -> str:
    return f"/fine_tuning/jobs/{segment(job_id)}{tail}"


class Checkpoints(Resource):
    def list(self, job_id: str, *, limit: int | None = None, after: str | None = None,
             timeout_seconds: float | None = None) -> ListResponse[JobCheckpoint]:
        """The job's saved checkpoints (``<job>/step-N``, each deployable), newest first."""
        return self._call("GET", _path(job_id, "/checkpoints"), ListResponse[JobCheckpoint],
                          params={"limit": limit, "after": after}, timeout_seconds=timeout_seconds)


class Jobs(Resource):
    def __init__(self, client: Any, *, raw: bool = False) -> None:
        super().__init__(client, raw=raw)
        self.checkpoints = Checkpoints(client, raw=raw)

    def create(self, *, model: str, training_file: str, hyperparameters: Mapping[str, Any] | None = None,
               method: str | Mapping[str, Any] | None = None, suffix: str | None = None, seed: int | None = None,
               validation_file: str | None = None, metadata: Mapping[str, str] | None = None,
               from_checkpoint: str | None = None, training_method: str | None = None,
               integrations: Sequence[Mapping[str, Any]] | None = None, wandb_api_key: str | None = None,
               timeout_seconds: float | None = None) -> FineTuningJob:
        """Queue a LoRA fine-tune of ``model`` on an uploaded file; ``from_checkpoint`` ("<job>" or
        "<job>/step-N") continues from that adapter. The job starts in ``validating_files``.
        ``integrations=[{"type": "wandb", "wandb": {"project": ...}}]`` logs the run to Weights & Biases, with
        ``wandb_api_key`` (sent once, never stored or returned) or the server's own ``WANDB_API_KEY``."""
        body = job_body(model=model, training_file=training_file, hyperparameters=hyperparameters, method=method,
                        suffix=suffix, seed=seed, validation_file=validation_file, metadata=metadata,
                        from_checkpoint=from_checkpoint, training_method=training_method,
                        integrations=integrations, wandb_api_key=wandb_api_key)
        return self._call("POST", "/fine_tuning/jobs", FineTuningJob, json=body, timeout_seconds=timeout_seconds)

    def estimate(self, *, model: str, training_file: str, hyperparameters: Mapping[str, Any] | None = None,
                 method: str | Mapping[str, Any] | None = None, suffix: str | None = None, seed: int | None = None,
                 validation_file: str | None = None, metadata: Mapping[str, str] | None = None,
                 from_checkpoint: str | None = None, training_method: str | None = None,
                 integrations: Sequence[Mapping[str, Any]] | None = None, wandb_api_key: str | None = None,
                 timeout_seconds: float | None = None) -> JobEstimate:
        """Validate the request and its files and estimate tokens (training and evaluation), steps and cost;
        creates nothing."""
        body = job_body(model=model, training_file=training_file, hyperparameters=hyperparameters, method=method,
                        suffix=suffix, seed=seed, validation_file=validation_file, metadata=metadata,
                        from_checkpoint=from_checkpoint, training_method=training_method,
                        integrations=integrations, wandb_api_key=wandb_api_key)
        return self._call("POST", "/fine_tuning/jobs", JobEstimate, json={**body, "dry_run": True},
                          timeout_seconds=timeout_seconds)

    def retrieve(self, job_id: str, *, timeout_seconds: float | None = None) -> FineTuningJob:
        return self._call("GET", _path(job_id), FineTuningJob, timeout_seconds=timeout_seconds)

    def list(self, *, limit: int | None = None, after: str | None = None,
             timeout_seconds: float | None = None) -> ListResponse[FineTuningJob]:
        """One page of your jobs, newest first."""
        return self._call("GET", "/fine_tuning/jobs", ListResponse[FineTuningJob],
                          params={"limit": limit, "after": after}, timeout_seconds=timeout_seconds)

    def delete(self, job_id: str, *, timeout_seconds: float | None = None) -> Deleted:
        """Delete an ended job that serves nowhere (its checkpoints and files go; its usage rows stay)."""
        return self._call("DELETE", _path(job_id), Deleted, timeout_seconds=timeout_seconds)

    def download(self, job_id: str, *, output: str | Path | None = None, checkpoint_step: int | None = None,
                 checkpoint_type: str = "default", on_progress: Callable[[int], None] | None = None,
                 timeout_seconds: float | None = None) -> Path:
        """The job's weights as a ``.tar.zst`` at ``output`` (a file, or a folder for the server's file name):
        the final adapter, else the newest checkpoint, or ``checkpoint_step``; ``checkpoint_type`` ``adapter``
        (``default``) or ``merged``. ``on_progress`` gets the bytes written so far. Returns the path."""
        return downloads.download(self, job_id, output=output, checkpoint_step=checkpoint_step,
                                  checkpoint_type=checkpoint_type, on_progress=on_progress,
                                  timeout_seconds=timeout_seconds if timeout_seconds is not None else 3600.0)

    def cancel(self, job_id: str, *, timeout_seconds: float | None = None) -> FineTuningJob:
        """Stop a job that has not ended; its saved checkpoints stay deployable."""
        return self._call("POST", _path(job_id, "/cancel"), FineTuningJob, timeout_seconds=timeout_seconds)

    def resume(self, job_id: str, *, timeout_seconds: float | None = None) -> FineTuningJob:
        """Queue a failed or cancelled job again; it continues from its last checkpoint."""
        return self._call("POST", _path(job_id, "/resume"), FineTuningJob, timeout_seconds=timeout_seconds)

    def list_events(self, job_id: str, *, after: str | None = None, limit: int | None = None,
                    order: str | None = None, timeout_seconds: float | None = None) -> ListResponse[JobEvent]:
        """A page of events: newest first by default; ``order="asc"`` is oldest first and ``after`` then
        means "newer than"."""
        return self._call("GET", _path(job_id, "/events"), ListResponse[JobEvent],
                          params={"after": after, "limit": limit, "order": order}, timeout_seconds=timeout_seconds)

    def metrics(self, job_id: str, *, timeout_seconds: float | None = None) -> JobMetrics:
        """The per-step series (train_loss, valid_loss, learning_rate, tokens_per_second, …), oldest first."""
        return self._call("GET", _path(job_id, "/metrics"), JobMetrics, timeout_seconds=timeout_seconds)

    def wait(self, job_id: str, *, on_event: Callable[[JobEvent], None] | None = None,
             on_job: Callable[[FineTuningJob], None] | None = None, poll: float = 1.0, timeout: float | None = None,
             timeout_seconds: float | None = None) -> FineTuningJob:
        """Poll until the job is ``succeeded``, ``failed`` or ``cancelled`` and return it.

        ``on_event`` gets every event not seen before, oldest first, including those already there when
        called; ``on_job`` gets the job after each poll. ``timeout`` (seconds, overall) raises
        ``TimeoutError``; ``timeout_seconds`` bounds each request. Ctrl-C leaves the job running.
        """
        return wait_for_job(self._plain(), job_id, on_event=on_event, on_job=on_job, poll=poll, timeout=timeout,
                            timeout_seconds=timeout_seconds)


class AsyncJobs(Jobs):
    """``Jobs`` for ``AsyncTenfold``: the same verbs (awaited); ``wait`` polls with ``asyncio.sleep``."""

    async def download(self, job_id: str, *, output: str | Path | None = None,  # type: ignore[override]
                       checkpoint_step: int | None = None, checkpoint_type: str = "default",
                       on_progress: Callable[[int], None] | None = None,
                       timeout_seconds: float | None = None) -> Path:
        return await downloads.adownload(self, job_id, output=output, checkpoint_step=checkpoint_step,
                                         checkpoint_type=checkpoint_type, on_progress=on_progress,
                                         timeout_seconds=timeout_seconds if timeout_seconds is not None else 3600.0)

    async def wait(self, job_id: str, *, on_event: Callable[[JobEvent], None] | None = None,  # type: ignore[override]
                   on_job: Callable[[FineTuningJob], None] | None = None, poll: float = 1.0,
                   timeout: float | None = None, timeout_seconds: float | None = None) -> FineTuningJob:
        return await async_wait_for_job(self._plain(), job_id, on_event=on_event, on_job=on_job, poll=poll, timeout=timeout,
                                        timeout_seconds=timeout_seconds)


class Evaluations(Resource):
    def create(self, *, models: Sequence[str], examples: Sequence[Mapping[str, Any]], max_examples: int | None = None,
               max_new_tokens: int | None = None, timeout_seconds: float | None = None) -> Evaluation:
        """Score each model (the base model, ``<job>`` or ``<job>/step-N``) on ``examples`` (decoded JSONL
        rows: ``messages``, ``prompt``/``completion``, or ``prompt`` + ``expected``). Waits at least 10
        minutes unless ``timeout_seconds`` says otherwise."""
        body = compact({"models": list(models), "examples": [dict(e) for e in examples],
                        "max_examples": max_examples, "max_new_tokens": max_new_tokens})
        timeout = timeout_seconds if timeout_seconds is not None else max(self._client.timeout,
                                                                          EVALUATION_MIN_TIMEOUT)
        return self._call("POST", "/fine_tuning/evaluations", Evaluation, json=body, timeout_seconds=timeout)


class FineTuning(Resource):
    def __init__(self, client: Any, *, raw: bool = False) -> None:
        super().__init__(client, raw=raw)
        self.jobs: Jobs = (AsyncJobs if client.is_async else Jobs)(client, raw=raw)
        self.evaluations = Evaluations(client, raw=raw)


__all__ = ["FineTuning", "Jobs", "AsyncJobs", "Checkpoints", "Evaluations", "job_body"]
