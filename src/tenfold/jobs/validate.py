"""Deep validation of a fine-tuning job's files, after creation: ``validating_files → queued`` or ``failed``.

Owns: tokenizing the job's training and validation files with its base model's tokenizer exactly as the
recipe will (truncation and skip counts become warning events) and the token and price estimate (also what
a dry run answers). A worker's validator claims a validating job through ``tenfold.jobs.lifecycle`` and
renews the lease while it tokenizes, so a validation cut short by a dead worker is taken over; a job
cancelled meanwhile stays cancelled (the move to ``queued`` or ``failed`` is the lifecycle's).
Does not own: the cheap checks that answer 400 at creation (``tenfold.jobs.submit``) or training
(``tenfold.jobs.worker``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tenfold.billing.pricing import training_cost
from tenfold.config import Settings
from tenfold.jobs import lifecycle
from tenfold.store import repo
from tenfold.store.db import Database
from tenfold.training.errors import TrainingUserError
from tenfold.training.spec import TrainingSpec

log = logging.getLogger("tenfold.worker")


class FileCheckError(TrainingUserError):
    """A job file that the recipe could not train on; ``param`` names it (``training_file``...)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


Estimate = dict[str, Any]  # the ``fine_tuning.job.estimate`` object


def tokenize_files(settings: Settings, spec: TrainingSpec) -> tuple[dict[str, Any], list[dict]]:
    """Tokenize the job's files as the recipe will: (``DatasetStats`` per file param, warning events).
    Raises ``FileCheckError`` when a file cannot be trained on."""
    from tenfold.models.registry import shared_tokenizer
    from tenfold.training.data import parse_jsonl
    from tenfold.training.tokenize import (
        DatasetStats,
        tokenize_dataset,
        tokenize_preferences,
    )

    out: dict[str, Any] = {}
    warnings: list[dict] = []
    with shared_tokenizer(spec.base_model, models_dir=settings.models_dir) as tokenizer:
        for param, path in (("training_file", spec.training_file), ("validation_file", spec.validation_file)):
            if path is None:
                continue
            stats = DatasetStats()

            def warn(message: str, _param: str = param, **counts: int) -> None:
                warnings.append({"message": f"{_param}: {message}", **counts})

            what = f"The {param.replace('_', ' ')}"
            try:
                examples = parse_jsonl(Path(path).read_bytes())
                if spec.method == "dpo":
                    tokenize_preferences(tokenizer, examples, max_length=spec.max_seq_length, warn=warn,
                                         stats=stats)
                else:
                    tokenize_dataset(tokenizer, examples, max_length=spec.max_seq_length,
                                     train_on_inputs=spec.train_on_inputs, warn=warn, stats=stats)
            except OSError as exc:
                raise FileCheckError(param, f"{what} can no longer be read ({exc.strerror}); it was probably "
                                            "deleted. Upload it again and create a new job") from None
            except TrainingUserError as exc:
                raise FileCheckError(param, f"{what} cannot be used for method '{spec.method}': {exc}") from None
            out[param] = stats
    return out, warnings


def estimate(settings: Settings, spec: TrainingSpec, stats: dict[str, Any], hyperparameters: dict) -> Estimate:
    """Tokens, steps and price of a run as seed 002's pricing counts them: ``n_epochs`` × training tokens
    (``estimated_trained_tokens``, what the job reports as ``trained_tokens``) + ``n_evals`` × validation
    tokens (``estimated_evaluation_tokens``); their sum (``estimated_total_tokens``) is what is billed."""
    train, valid = stats["training_file"], stats.get("validation_file")
    batch_size = spec.resolved_batch_size(train.n_examples)
    steps = -(-train.n_examples // batch_size) * spec.n_epochs
    tokens = train.n_tokens * spec.n_epochs
    n_evals = spec.n_evals(steps) if valid is not None else 0
    per_eval = valid.n_tokens if valid is not None else 0
    total = tokens + n_evals * per_eval
    price = settings.price_for(spec.base_model)
    return {"object": "fine_tuning.job.estimate", "model": spec.base_model, "method": spec.method,
            "n_examples": train.n_examples, "tokens_per_epoch": train.n_tokens, "n_epochs": spec.n_epochs,
            "total_steps": steps, "estimated_trained_tokens": tokens,
            "n_validation_examples": valid.n_examples if valid is not None else 0,
            "validation_tokens_per_eval": per_eval, "eval_every": spec.resolved_eval_every(steps),
            "n_evals": n_evals, "estimated_evaluation_tokens": n_evals * per_eval, "estimated_total_tokens": total,
            "truncated_examples": len(train.truncated_lines), "skipped_examples": len(train.dropped_lines),
            "training_price_per_mtok_micro_usd": price.training_per_mtok,
            "estimated_cost_micro_usd": training_cost(price, tokens=total),
            "hyperparameters": hyperparameters, "from_checkpoint": spec.from_checkpoint}


@contextmanager
def _lease(db: Database, *, job_id: str, worker_id: str, every: float) -> Iterator[None]:
    """Renew this worker's hold on a validating job while the body runs."""
    done = threading.Event()

    def renew() -> None:
        while not done.wait(every):
            try:
                lifecycle.renew_validation(db, job_id=job_id, worker_id=worker_id)
            except Exception:  # a lost renewal only risks a second validator; never kill the validation
                log.exception("renewing the validation lease of %s", job_id)

    thread = threading.Thread(target=renew, name=f"lease-{job_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def _fail(db: Database, *, job_id: str, code: str, message: str, param: str | None) -> None:
    with db.session() as s:
        lifecycle.fail(s, job_id=job_id, code=code, message=message, param=param)


def validate_job(settings: Settings, db: Database, *, job_id: str, worker_id: str) -> str | None:
    """Validate a job this worker claimed; returns its new status (``queued``/``failed``), or None when it
    was cancelled or taken over meanwhile (then nothing is written)."""
    try:
        with db.session() as s:
            job = repo.get_job(s, job_id=job_id, organization_id=None)
            spec, hyperparameters = TrainingSpec.model_validate(job.spec), dict(job.hyperparameters or {})
        with _lease(db, job_id=job_id, worker_id=worker_id, every=settings.job_heartbeat_seconds):
            stats, warnings = tokenize_files(settings, spec)
    except FileCheckError as exc:
        _fail(db, job_id=job_id, code="invalid_training_file", param=exc.param,
              message=f"{exc}. Nothing was trained; fix the file or the hyperparameters and create a new job.")
        return "failed"
    except Exception as exc:  # noqa: BLE001 - e.g. the base model's tokenizer cannot be loaded
        log.exception("validating %s", job_id)
        _fail(db, job_id=job_id, code="validation_error", param=None,
              message=f"the files could not be validated: {type(exc).__name__}: {exc}. Resume the job to "
                      f"validate them again (POST /v1/fine_tuning/jobs/{job_id}/resume).")
        return "failed"
    est = estimate(settings, spec, stats, hyperparameters)
    evals = (f" plus {est['estimated_evaluation_tokens']} validation tokens ({est['n_evals']} evaluations of "
             f"{est['validation_tokens_per_eval']})" if est["n_evals"] else "")
    summary = (f"Files validated: {est['n_examples']} examples, {est['tokens_per_epoch']} tokens per epoch; "
               f"about {est['estimated_trained_tokens']} training tokens over {spec.n_epochs} epochs{evals} "
               f"(estimated cost ${est['estimated_cost_micro_usd'] / 1e6:.6f}).")
    events = [("warn", w["message"], w) for w in warnings] + [("info", summary, est)]
    with db.session() as s:
        if not lifecycle.validated(s, job_id=job_id, worker_id=worker_id, events=events):
            return None
    return "queued"
