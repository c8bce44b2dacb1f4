"""Turning a job-create request into a queued job: resolve hyperparameters ("auto" → defaults), check the
files and base model, build the ``TrainingSpec`` and insert the row.

Owns: hyperparameter defaults as users see them and the mapping of OpenAI names onto ours. Does not own:
the spec's bounds (``TrainingSpec``) or running it (``tenfold.jobs.worker``).
"""

from __future__ import annotations

import secrets

from pydantic import ValidationError

from tenfold.api.deps import Principal, ServerContext
from tenfold.api.errors import APIError, bad_request
from tenfold.store import repo
from tenfold.store.tables import FineTuningJob
from tenfold.training.spec import TrainingSpec
from tenfold.types.fine_tuning import JobCreate

BASE_LEARNING_RATE = 1e-3  # learning_rate_multiplier scales this
DEFAULTS = {"n_epochs": 3, "batch_size": 8, "learning_rate": BASE_LEARNING_RATE, "lora_r": 16, "lora_alpha": 32,
            "lora_dropout": 0.0, "checkpoint_every": 0, "warmup_ratio": 0.0, "max_length": 1024,
            "train_on_inputs": "auto"}


def resolve_hyperparameters(body: JobCreate) -> dict:
    given: dict = {}
    for hp in (body.hyperparameters, body.method.supervised.hyperparameters
               if body.method and body.method.supervised else None):
        if hp is not None:
            given.update({k: v for k, v in hp.model_dump(exclude_none=True).items() if v != "auto"})
    mult = given.pop("learning_rate_multiplier", None)
    if mult is not None:
        if "learning_rate" in given:
            raise bad_request("Give either learning_rate or learning_rate_multiplier, not both.",
                              param="hyperparameters.learning_rate")
        if mult <= 0:
            raise bad_request("learning_rate_multiplier must be > 0.", param="hyperparameters")
        given["learning_rate"] = BASE_LEARNING_RATE * mult
    return {**DEFAULTS, **given}


def served_base_models(c: ServerContext) -> list[str]:
    return [c.settings.base_model]


def create_job(c: ServerContext, p: Principal, body: JobCreate) -> FineTuningJob:
    bases = served_base_models(c)
    if body.model not in bases:
        raise bad_request(f"Unknown base model '{body.model}'. This server fine-tunes: {', '.join(bases)}.",
                          param="model", code="model_not_found")
    hp = resolve_hyperparameters(body)
    job_id = "ftjob-" + secrets.token_hex(10)
    seed = body.seed if body.seed is not None else secrets.randbelow(2**31)
    with c.db.session() as s:
        paths = {}
        for param, file_id in (("training_file", body.training_file), ("validation_file", body.validation_file)):
            if file_id is None:
                continue
            f = repo.get_file(s, organization_id=p.organization_id, file_id=file_id)
            if f is None:
                raise APIError(404, f"No file with id '{file_id}' was found. Upload it first with "
                                    "POST /v1/files (purpose 'fine-tune').", param=param, code="file_not_found")
            if f.purpose != "fine-tune":
                raise bad_request(f"File '{file_id}' has purpose '{f.purpose}'; fine-tuning needs purpose "
                                  "'fine-tune'.", param=param)
            paths[param] = str(c.artifacts.path(f.storage_key))
        try:
            spec = TrainingSpec(
                base_model=body.model, training_file=paths["training_file"],
                validation_file=paths.get("validation_file"), output_dir=str(c.artifacts.path(f"jobs/{job_id}")),
                seed=seed, **{k: v for k, v in hp.items()},
            )
        except ValidationError as e:
            err = e.errors()[0]
            field = ".".join(str(x) for x in err["loc"])
            raise bad_request(f"Invalid hyperparameter {field}: {err['msg']}.",
                              param=f"hyperparameters.{field}") from None
        row = repo.create_job(s, job_id=job_id, organization_id=p.organization_id, api_key_id=p.api_key_id,
                              model=body.model, training_file=body.training_file,
                              validation_file=body.validation_file, suffix=body.suffix, seed=seed,
                              spec=spec.model_dump(mode="json"), hyperparameters=hp)
        repo.add_event(s, job_id=job_id, message=f"Created fine-tuning job {job_id} on {body.model}; queued.")
    return row

