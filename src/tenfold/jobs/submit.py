"""Turning a job-create request into a job in ``validating_files`` (or, with ``dry_run``, into an estimate):
resolve hyperparameters ("auto" → defaults), check the files, the base model and ``from_checkpoint``, build
the ``TrainingSpec`` and insert the row.

Owns: the mapping of OpenAI names onto ours ("auto" → the spec's defaults; seed 002's ``training_method``
onto ``method``; the ``wandb`` integration onto the spec's ``wandb``), the cheap checks that answer 400/404
at creation and leave nothing behind (spec bounds, the files exist, are yours, have purpose ``fine-tune`` and
hold the format the method trains on), handing a request's ``wandb_api_key`` to ``tenfold.jobs.wandb_keys``
(memory only), the dry run (which tokenizes synchronously and returns the estimate), and resume of a failed
or cancelled job. Does not own: the hyperparameters' defaults
and bounds (``TrainingSpec``), status changes and their events (``tenfold.jobs.lifecycle``), the deep
validation that follows creation (``tenfold.jobs.validate``) or training (``tenfold.jobs.worker``).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tenfold.context import Principal, ServerContext
from tenfold.errors import Conflict, InvalidRequest, NotFound, not_found
from tenfold.jobs import lifecycle, refs, wandb_keys
from tenfold.jobs.validate import Estimate, FileCheckError, estimate, tokenize_files
from tenfold.store import repo
from tenfold.store.tables import FineTuningJob
from tenfold.training.examples import FORMAT_LABELS, method_for
from tenfold.training.spec import (
    BASE_LEARNING_RATE,
    TrainingSpec,
    hyperparameter_defaults,
)
from tenfold.types.fields import field_path
from tenfold.types.fine_tuning import JobCreate, WandbSettings


def method_of(body: JobCreate) -> str:
    """``sft`` or ``dpo``, from OpenAI's ``method.type`` or seed 002's ``training_method`` (which must agree)."""
    by_method = None if body.method is None else ("dpo" if body.method.type == "dpo" else "sft")
    by_alias = None if body.training_method is None else ("dpo" if body.training_method == "dpo" else "sft")
    if by_method and by_alias and by_method != by_alias:
        raise InvalidRequest(f"training_method '{body.training_method}' and method.type '{body.method.type}' "
                             "disagree; give one of them (training_method is another name for method.type: "
                             "'sft' or 'supervised', or 'dpo').", param="training_method")
    return by_method or by_alias or "sft"


DEFAULT_WANDB_PROJECT = "tenfold"  # where a run goes when only wandb_api_key is given


def wandb_settings(body: JobCreate, job_id: str) -> WandbSettings | None:
    """The W&B run a job logs to: the ``wandb`` integration (run name defaulting to the job id, as OpenAI
    does), or project ``tenfold`` when only ``wandb_api_key`` is given; None without either."""
    given = next((i.wandb for i in body.integrations or () if i.type == "wandb"), None)
    if given is None and body.wandb_api_key is None:
        return None
    given = given or WandbSettings(project=DEFAULT_WANDB_PROJECT)
    return given.model_copy(update={"name": given.name or job_id})


def _check_wandb_key(body: JobCreate) -> None:
    if body.wandb_api_key is not None and not wandb_keys.can_hold():
        raise InvalidRequest(
            "This server runs no training worker in its own process (tenfold serve --role api), so a "
            "wandb_api_key sent with the request could reach a worker only through storage, and tenfold never "
            "stores it. Leave wandb_api_key out and set WANDB_API_KEY in the environment of the worker processes "
            "(tenfold serve --role worker); the run then logs to the project given in integrations.",
            param="wandb_api_key")


def resolve_hyperparameters(body: JobCreate) -> dict:
    method = method_of(body)
    given = hp_given(body)
    for old, new in (("max_length", "max_seq_length"), ("beta", "dpo_beta")):
        if old in given:
            if new in given:
                raise InvalidRequest(f"Give {new} only ({old} is another name for it).", param=f"hyperparameters.{old}")
            given[new] = given.pop(old)
    if "dpo_beta" in given and method != "dpo":
        raise InvalidRequest("dpo_beta applies to method 'dpo' only; set method: {\"type\": \"dpo\"}.",
                          param="hyperparameters.dpo_beta")
    mult = given.pop("learning_rate_multiplier", None)
    if mult is not None:
        if "learning_rate" in given:
            raise InvalidRequest("Give either learning_rate or learning_rate_multiplier, not both.",
                              param="hyperparameters.learning_rate")
        if mult <= 0:
            raise InvalidRequest("learning_rate_multiplier must be > 0.", param="hyperparameters")
        given["learning_rate"] = BASE_LEARNING_RATE * mult
    if "n_checkpoints" in given and "checkpoint_every" not in given:
        given["checkpoint_every"] = 0
    return {**hyperparameter_defaults(method), **given}


def served_base_models(c: ServerContext) -> list[str]:
    return [c.settings.base_model]


def _resolve_checkpoint(s, p: Principal, body: JobCreate, given: dict) -> tuple[str, dict]:
    """(adapter folder, LoRA fields it fixes) for ``from_checkpoint``."""
    name = (body.from_checkpoint or "").strip()
    source = refs.resolve(s, organization_id=p.organization_id, name=name, param="from_checkpoint")
    if source.base_model != body.model:
        raise InvalidRequest(f"{name} was trained on '{source.base_model}', not '{body.model}'; continue it on the "
                             "same base model.", param="from_checkpoint")
    folder = source.path
    config = json.loads((Path(folder) / "adapter_config.json").read_text())
    fixed = {"lora_r": int(config["r"]), "lora_alpha": int(config["lora_alpha"]),
             "target_modules": sorted(config["target_modules"]) if isinstance(config["target_modules"], list)
             else config["target_modules"]}
    for key in ("lora_r", "lora_alpha"):
        if key in given and given[key] != fixed[key]:
            raise InvalidRequest(f"{name} has {key}={fixed[key]}; a continued job keeps the adapter's shape, so "
                              f"leave {key} out or set it to {fixed[key]}.", param=f"hyperparameters.{key}")
    return folder, fixed


def _spec_error(e: ValidationError) -> InvalidRequest:
    err = e.errors()[0]
    field = field_path(tuple(err["loc"]))
    msg = err["msg"].removeprefix("Value error, ")
    if not field:  # a cross-field rule: its message names the fields
        named = re.search(r"\b(checkpoint_every|n_checkpoints|eval_every|packing|batch_size|max_seq_length)\b", msg)
        field = named.group(1) if named else ""
        return InvalidRequest(f"Invalid hyperparameters: {msg}.", param=f"hyperparameters.{field}" if field else None)
    if field in ("seed", "suffix"):
        return InvalidRequest(f"Invalid {field}: {msg}.", param=field)
    return InvalidRequest(f"Invalid hyperparameter {field}: {msg}.", param=f"hyperparameters.{field}")


def _check_fits(param: str, f: Any, method: str) -> None:
    """A 400 when the file's format (found on upload) is not what ``method`` trains on."""
    if not f.data_format or f.data_format not in FORMAT_LABELS or method_for(f.data_format) == method:
        return
    held = FORMAT_LABELS[f.data_format]
    if method == "dpo":
        raise InvalidRequest(f"File '{f.id}' holds {held} examples, but method 'dpo' needs preference pairs "
                          "('prompt', 'chosen', 'rejected'); train it with method 'sft' or upload preference pairs. "
                          "Nothing was created.", param=param, code="invalid_training_file")
    raise InvalidRequest(f"File '{f.id}' holds {held} examples, which train with method 'dpo'; set method "
                      "{\"type\": \"dpo\"} or upload 'messages', 'text' or 'prompt'/'completion' examples for sft. "
                      "Nothing was created.", param=param, code="invalid_training_file")


def _dry_run(c: ServerContext, spec: TrainingSpec, hp: dict) -> Estimate:
    try:
        stats, _ = tokenize_files(c.settings, spec)
    except FileCheckError as exc:
        raise InvalidRequest(f"{exc}. Nothing was created.", param=exc.param, code="invalid_training_file") from None
    return estimate(c.settings, spec, stats, hp)


def create_job(c: ServerContext, p: Principal, body: JobCreate) -> FineTuningJob | Estimate:
    """The new job row, or the estimate when ``body.dry_run``."""
    bases = served_base_models(c)
    if body.model not in bases:
        raise InvalidRequest(f"Unknown base model '{body.model}'. This server fine-tunes: {', '.join(bases)}.",
                             param="model", code="model_not_found")
    hp = resolve_hyperparameters(body)
    _check_wandb_key(body)
    job_id = "ftjob-" + secrets.token_hex(10)
    seed = body.seed if body.seed is not None else secrets.randbelow(2**31)
    with _key_held(job_id, body), c.db.session() as s:
        spec = _build_spec(c, s, p, body, hp, job_id=job_id, seed=seed)
        if body.dry_run:
            return _dry_run(c, spec, hp)
        start = f" from {body.from_checkpoint}" if body.from_checkpoint else ""
        logs = f"; logging to W&B project {spec.wandb.project}" if spec.wandb else ""
        return lifecycle.create(
            s, job_id=job_id, organization_id=p.organization_id, api_key_id=p.api_key_id, model=body.model,
            training_file=body.training_file, validation_file=body.validation_file, suffix=body.suffix, seed=seed,
            spec=spec.model_dump(mode="json"), hyperparameters=hp, metadata=body.metadata,
            message=f"Created {spec.method} fine-tuning job {job_id} on {body.model}{start}{logs}; validating files.")


def _build_spec(c: ServerContext, s, p: Principal, body: JobCreate, hp: dict, *, job_id: str, seed: int
                ) -> TrainingSpec:
    """The job's ``TrainingSpec`` after the checks that need the store: its files and ``from_checkpoint``."""
    paths, files = {}, {}
    for param, file_id in (("training_file", body.training_file), ("validation_file", body.validation_file)):
        if file_id is None:
            continue
        f = repo.get_file(s, organization_id=p.organization_id, file_id=file_id)
        if f is None:
            raise NotFound(f"No file with id '{file_id}' was found. Upload it first with "
                           "POST /v1/files (purpose 'fine-tune').", param=param, code="file_not_found")
        if f.purpose != "fine-tune":
            raise InvalidRequest(f"File '{file_id}' has purpose '{f.purpose}'; fine-tuning needs purpose "
                                 "'fine-tune'.", param=param)
        files[param] = f
        paths[param] = str(c.artifacts.path(f.storage_key))
    init_adapter = None
    if body.from_checkpoint is not None:
        init_adapter, fixed = _resolve_checkpoint(s, p, body, hp_given(body))
        hp.update(fixed)
    try:
        spec = TrainingSpec(
            method=method_of(body), base_model=body.model, training_file=paths["training_file"],
            validation_file=paths.get("validation_file"), output_dir=str(c.artifacts.path(f"jobs/{job_id}")),
            seed=seed, suffix=body.suffix, init_adapter=init_adapter, from_checkpoint=body.from_checkpoint,
            wandb=wandb_settings(body, job_id), **hp,
        )
    except ValidationError as e:
        raise _spec_error(e) from None
    for param, f in files.items():
        _check_fits(param, f, spec.method)
    return spec


@contextmanager
def _key_held(job_id: str, body: JobCreate) -> Iterator[None]:
    """Hold the request's W&B key for the new job in this process's memory, before its row is committed (so
    the worker finds it once it can claim the job); forget it if the job is not created. A dry run holds none."""
    if body.wandb_api_key is None or body.dry_run:
        yield
        return
    wandb_keys.hold(job_id, body.wandb_api_key.get_secret_value())
    try:
        yield
    except BaseException:
        wandb_keys.drop(job_id)
        raise


def hp_given(body: JobCreate) -> dict:
    """The hyperparameters the request set explicitly (not "auto"), by our names."""
    given: dict = {}
    nested = getattr(body.method, body.method.type, None) if body.method is not None else None
    for hp in (body.hyperparameters, nested.hyperparameters if nested else None):
        if hp is not None:
            given.update({k: v for k, v in hp.model_dump(exclude_none=True).items() if v != "auto"})
    return given


def resume_job(c: ServerContext, p: Principal, job_id: str) -> FineTuningJob:
    """Queue a failed or cancelled job again; the worker resumes it from its last checkpoint (optimizer,
    schedule, data position and RNG included) or, without one, from the start. A job that never started
    training (it failed or was cancelled while its files were validated) goes back to ``validating_files``."""
    with c.db.session() as s:
        job = repo.get_job(s, job_id=job_id, organization_id=p.organization_id)
        if job is None:
            raise not_found("fine-tuning job", job_id, hint="List your jobs with GET /v1/fine_tuning/jobs.")
        if job.status not in ("failed", "cancelled"):
            raise Conflict(f"Job {job_id} is {job.status}; only failed or cancelled jobs can be resumed.",
                           code="invalid_state")
        if not Path(job.spec["training_file"]).exists():
            raise Conflict(f"The training file of {job_id} ({job.training_file}) was deleted; create a new "
                           "job instead.", code="invalid_state")
        if lifecycle.resume(s, job=job, steps=refs.saved_steps(s, job_id=job_id)) is None:
            raise Conflict(f"Job {job_id} changed state meanwhile; try again.", code="invalid_state")
        s.flush()
        s.refresh(job)
        return job
