"""The Weights & Biases run of one training process, when the job's spec asks for one (``spec.wandb``).

Owns: starting the run (project, name, entity and tags from the spec, plus the tags tenfold/finetune,
tenfold/<base model> and tenfold/<job id>; the run id is the job id, so a resumed job continues its run), its
config (the resolved hyperparameters, completed with the run-time values of the ``started`` event), one
history row per logged step (``train/loss``, ``train/learning_rate``, ``train/tokens_per_second``,
``train/tokens``, ``train/epoch``, accuracy or reward metrics, and ``valid/…`` when the step evaluated),
the final summary and finishing the run (as failed when training fails or is cancelled).

The API key is never in the spec: wandb reads ``WANDB_API_KEY`` from this process's environment, where the
worker put it. ``WANDB_MODE=offline`` writes the run under ``<output_dir>/wandb`` (or ``WANDB_DIR``) for a
later ``wandb sync``. wandb is imported only when a run is asked for. Does not own: the events themselves
(``tenfold.training.runner``) or the stdout protocol (``tenfold.training.main``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tenfold.training.errors import TrainingUserError
from tenfold.training.runner import Emit
from tenfold.training.spec import DPO_HYPERPARAMETERS, JOB_HYPERPARAMETERS, TrainingSpec

_TRAIN_KEYS = ("loss", "learning_rate", "tokens_per_second", "tokens", "epoch", "token_accuracy",
               "reward_accuracy", "reward_margin")
_STARTED_KEYS = ("total_steps", "n_examples", "batch_size", "checkpoint_every", "eval_every", "n_evals",
                 "validation_tokens", "trainable_params", "total_params", "device")
_SUMMARY_KEYS = ("steps", "trained_tokens", "evaluated_tokens", "n_evals", "train_loss",
                 "train_mean_token_accuracy", "train_reward_accuracy", "valid_loss", "valid_mean_token_accuracy",
                 "valid_reward_margin", "valid_reward_accuracy")


def config_of(spec: TrainingSpec) -> dict[str, Any]:
    """The run's config: the method, base model, seed and resolved hyperparameters of the spec."""
    names = JOB_HYPERPARAMETERS + (DPO_HYPERPARAMETERS if spec.method == "dpo" else ())
    return {"method": spec.method, "base_model": spec.base_model, "seed": spec.seed,
            "from_checkpoint": spec.from_checkpoint, **{n: getattr(spec, n) for n in names}}


def step_row(event: dict[str, Any]) -> dict[str, float]:
    """The W&B history row of a ``metrics`` event."""
    row = {f"train/{k}": event[k] for k in _TRAIN_KEYS if event.get(k) is not None}
    row.update({f"valid/{k[len('valid_'):]}": v for k, v in event.items() if k.startswith("valid_") and v is not None})
    return row


class WandbRun:
    """Wraps ``emit``: every event goes on to ``emit`` and is mirrored to the W&B run."""

    def __init__(self, spec: TrainingSpec, emit: Emit) -> None:
        if spec.wandb is None:
            raise ValueError("the spec asks for no W&B run")
        self.spec, self.settings, self.emit = spec, spec.wandb, emit
        self.run: Any = None

    def start(self) -> None:
        import wandb

        job_id = Path(self.spec.output_dir).name
        tags = [*(self.settings.tags or []), "tenfold/finetune", f"tenfold/{self.spec.base_model}"[:64]]
        if job_id.startswith("ftjob-"):
            tags.append(f"tenfold/{job_id}")
        folder = os.environ.get("WANDB_DIR") or self.spec.output_dir
        Path(folder).mkdir(parents=True, exist_ok=True)
        try:
            self.run = wandb.init(
                project=self.settings.project, entity=self.settings.entity, name=self.settings.name,
                tags=list(dict.fromkeys(tags)), config=config_of(self.spec), dir=folder,
                id=job_id if job_id.startswith("ftjob-") else None, resume="allow",
                settings=wandb.Settings(console="off"))
        except Exception as exc:  # noqa: BLE001 - wandb raises many kinds (UsageError, CommError, ...)
            raise TrainingUserError(
                f"W&B: could not start the run in project '{self.settings.project}': {type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}. Send wandb_api_key with the job, or set "
                "WANDB_API_KEY in the worker's environment (WANDB_MODE=offline logs to files instead).") from None
        mode = self.run.settings.mode
        where = (f"offline, in {self.run.dir.removesuffix('/files')}; upload it with `wandb sync`"
                 if mode == "offline" else getattr(self.run, "url", None) or mode)
        self.emit({"type": "info", "message": f"W&B run '{self.run.name}' in project '{self.settings.project}' "
                                              f"({where}).", "wandb_run_id": self.run.id, "wandb_mode": mode,
                   "wandb_dir": str(Path(self.run.dir).parent), "wandb_api_key_set": bool(
                       os.environ.get("WANDB_API_KEY"))})

    def __call__(self, event: dict[str, Any]) -> None:
        self.emit(event)
        kind = event.get("type")
        if kind == "started":
            self.run.config.update({k: event[k] for k in _STARTED_KEYS if k in event}, allow_val_change=True)
        elif kind == "metrics":
            self.run.log(step_row(event), step=int(event["step"]))
        elif kind == "done":
            self.run.summary.update({k: event[k] for k in _SUMMARY_KEYS if event.get(k) is not None})

    def finish(self, *, failed: bool) -> None:
        if self.run is not None:
            self.run.finish(exit_code=1 if failed else 0)
            self.run = None
