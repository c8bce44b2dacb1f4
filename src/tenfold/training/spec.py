"""``TrainingSpec``: the validated, complete description of one fine-tuning run, stored as JSON on the job.

Owns: hyperparameter names, defaults and bounds (the fields below; ``HYPERPARAMETER_HELP`` is what
``docs/api.md`` and ``tenfold train --help`` show, ``hyperparameter_defaults`` what a job records), and the
cross-field rules (``checkpoint_every`` xor ``n_checkpoints``, ``eval_every`` needs a validation file).
Unknown fields are rejected (``extra="forbid"``); an out-of-range value is a ``pydantic.ValidationError`` whose
location names the field. Does not own: how the api parses OpenAI-style request bodies into it
(``tenfold.jobs.submit``) or how a recipe runs it (``tenfold.training.sft`` / ``tenfold.training.dpo``).

Run-time resolution (the recipe does it once the data is loaded, deterministically, so resume agrees):
``batch_size="max"`` becomes ``min(n_examples, MAX_BATCH_SIZE)``; ``n_checkpoints=K`` becomes
``checkpoint_every=ceil(total_steps / K)``; ``eval_every="auto"`` becomes ``max(1, round(total_steps / 10))``
(about ten validation losses per run). With a validation file the validation set is evaluated at every
``eval_every``-th step, at every checkpoint and at the last step (``evaluates_at``, ``n_evals``): what the
recipe runs and what the estimate and the bill count (``n_evals`` × validation tokens).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tenfold.types.fine_tuning import (
    BatchSize,
    CheckpointEvery,
    DpoBeta,
    EvalEvery,
    LearningRate,
    LoraAlpha,
    LoraDropout,
    LoraR,
    LrScheduler,
    MaxSeqLength,
    NCheckpoints,
    NEpochs,
    NProcs,
    Seed,
    Suffix,
    TargetModules,
    TrainOnInputs,
    WandbSettings,
    WarmupRatio,
    WeightDecay,
)

MAX_BATCH_SIZE = 64  # what batch_size="max" may resolve to
AUTO_EVALS_PER_RUN = 10  # eval_every="auto": about this many validation losses per run

# name -> one-line help; the single source for docs and `tenfold train --help`. Defaults are TrainingSpec's.
_HELP: dict[str, str] = {
    "method": "sft (supervised) or dpo (preference pairs)",
    "n_epochs": "passes over the training file (1-100)",
    "batch_size": "examples per optimizer step (1-1024) or \"max\" (= min(examples, 64))",
    "learning_rate": "peak AdamW learning rate (0 < lr <= 1)",
    "lr_scheduler": "linear | cosine | constant (after warmup)",
    "warmup_ratio": "fraction of steps with linear warmup (0 <= x < 1)",
    "lora_r": "LoRA rank (1-512)",
    "lora_alpha": "LoRA alpha (1-4096)",
    "lora_dropout": "LoRA dropout (0 <= x < 1)",
    "target_modules": "\"all-linear\" or a list of module names",
    "max_seq_length": "tokens per example; longer examples are truncated and counted (16-131072)",
    "train_on_inputs": "auto | true | false: auto trains on assistant turns only",
    "packing": "pack several examples into one row (no attention across examples)",
    "checkpoint_every": "save a deployable checkpoint every N steps (0 = final adapter only)",
    "n_checkpoints": "alternatively: this many evenly spaced checkpoints (0 = use checkpoint_every)",
    "seed": "seed for LoRA init, data order and dropout; fixed seed = reproducible run",
    "dpo_beta": "DPO temperature beta (0 < beta <= 10); dpo only",
    "n_procs": "processes the run is spread over with torchrun (1-64; gloo on CPU, NCCL on GPUs; the worker "
               "caps it at TENFOLD_WORKER_MAX_PROCS); the result equals one process's",
    "eval_every": "validation loss every N steps (\"auto\" = about ten times per run; 0 = at checkpoints and "
                  "the end); with a validation_file",
}
# What a job records as its resolved hyperparameters (``hyperparameters`` on the job object), by method.
JOB_HYPERPARAMETERS = ("n_epochs", "batch_size", "learning_rate", "lr_scheduler", "lora_r", "lora_alpha",
                       "lora_dropout", "target_modules", "checkpoint_every", "n_checkpoints", "warmup_ratio",
                       "max_seq_length", "train_on_inputs", "packing", "eval_every", "n_procs")
DPO_HYPERPARAMETERS = ("dpo_beta",)


class TrainingSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Literal["sft", "dpo"] = "sft"
    base_model: str
    # Absolute path of the base model folder (safetensors + tokenizer), resolved by the worker.
    base_model_path: str | None = None
    training_file: str  # absolute path of the JSONL on disk
    validation_file: str | None = None
    output_dir: str  # checkpoints go to <output_dir>/step-<N>, the final adapter to <output_dir>/final
    suffix: Suffix | None = None

    # Bounds are the wire types' (``tenfold.types.fine_tuning``), so the API states exactly these.
    n_epochs: NEpochs = 3
    batch_size: BatchSize | Literal["max"] = 8
    learning_rate: LearningRate = 1e-3
    lr_scheduler: LrScheduler = "linear"
    warmup_ratio: WarmupRatio = 0.0
    weight_decay: WeightDecay = 0.0
    max_grad_norm: float = Field(default=1.0, gt=0)
    lora_r: LoraR = 16
    lora_alpha: LoraAlpha = 32
    lora_dropout: LoraDropout = 0.0
    target_modules: TargetModules = "all-linear"
    max_seq_length: MaxSeqLength = 1024
    packing: bool = False
    checkpoint_every: CheckpointEvery = 0  # steps; 0 = only the final adapter
    n_checkpoints: NCheckpoints = 0
    train_on_inputs: TrainOnInputs = "auto"
    seed: Seed = 42
    dpo_beta: DpoBeta = 0.1
    eval_every: EvalEvery | Literal["auto"] = "auto"
    n_procs: NProcs = 1  # processes (torchrun); the worker caps it at TENFOLD_WORKER_MAX_PROCS
    logging_steps: int = Field(default=1, ge=1)
    # Not a hyperparameter (the math does not change): a step's examples run forward and backward in groups
    # of at most this many token positions with gradients accumulated, which bounds activation memory.
    # 0 = the whole step in one pass; None = the device's default (``batching.default_micro_batch_tokens``).
    micro_batch_tokens: int | None = Field(default=None, ge=0)
    torch_threads: int = Field(default=0, ge=0)
    # Not a hyperparameter either: the frozen base weights' format (``TENFOLD_TRAIN_DTYPE``). "auto" measures
    # on CPU like the engine (``tenfold.engine.number_format``; cached in ``format_cache``) and takes bfloat16
    # where it wins; adapter weights, gradients and optimizer state stay float32 whatever the format.
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    format_cache: str = ""
    resume_from: str | None = None  # a checkpoint folder holding resume state
    init_adapter: str | None = None  # continued fine-tuning: start from this adapter folder's weights
    from_checkpoint: str | None = None  # what the user named (<job> or <job>/step-N), for display
    # Log the run to Weights & Biases (project, name, entity, tags). Never a key: the API key reaches the
    # trainer in its environment (WANDB_API_KEY) only, so it is in no spec.json, row or event.
    wandb: WandbSettings | None = None

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            if "max_length" in data:  # the name used before max_seq_length
                if "max_seq_length" in data:
                    raise ValueError("give max_seq_length only (max_length is its old name)")
                data["max_seq_length"] = data.pop("max_length")
            if data.get("method") == "supervised":  # OpenAI's name for sft
                data["method"] = "sft"
        return data

    @model_validator(mode="after")
    def _cross_field(self) -> TrainingSpec:
        if self.checkpoint_every and self.n_checkpoints:
            raise ValueError("give checkpoint_every or n_checkpoints, not both")
        if self.eval_every not in (0, "auto") and not self.validation_file:
            raise ValueError("eval_every needs a validation_file")
        if self.method == "dpo" and self.packing:
            raise ValueError("packing applies to sft only; set packing=false for dpo")
        return self

    # ---- run-time resolution ------------------------------------------------------------------

    def resolved_batch_size(self, n_examples: int) -> int:
        if self.batch_size == "max":
            return max(1, min(n_examples, MAX_BATCH_SIZE))
        return int(self.batch_size)

    def resolved_checkpoint_every(self, total_steps: int) -> int:
        if self.n_checkpoints:
            return max(1, math.ceil(total_steps / self.n_checkpoints))
        return self.checkpoint_every

    def resolved_eval_every(self, total_steps: int) -> int:
        """Steps between validation losses (0: only at checkpoints and the end; 0 without a validation file)."""
        if not self.validation_file:
            return 0
        if self.eval_every == "auto":
            return max(1, math.floor(total_steps / AUTO_EVALS_PER_RUN + 0.5))
        return int(self.eval_every)

    def evaluates_at(self, step: int, total_steps: int) -> bool:
        """Whether the validation set is evaluated after ``step`` (1-based) of a run of ``total_steps``."""
        if not self.validation_file or not 1 <= step <= total_steps:
            return False
        every, ckpt = self.resolved_eval_every(total_steps), self.resolved_checkpoint_every(total_steps)
        return step == total_steps or bool(every and step % every == 0) or bool(ckpt and step % ckpt == 0)

    def n_evals(self, total_steps: int) -> int:
        """How many times a run of ``total_steps`` evaluates the validation set (``evaluates_at`` counted)."""
        if not self.validation_file or total_steps <= 0:
            return 0
        every, ckpt = self.resolved_eval_every(total_steps), self.resolved_checkpoint_every(total_steps)
        n = (total_steps // every if every else 0) + (total_steps // ckpt if ckpt else 0)
        if every and ckpt:
            n -= total_steps // math.lcm(every, ckpt)  # steps that are both
        last_counted = bool(every and total_steps % every == 0) or bool(ckpt and total_steps % ckpt == 0)
        return n + (0 if last_counted else 1)


def hyperparameter_defaults(method: str) -> dict[str, Any]:
    """The defaults of the hyperparameters a job of ``method`` records (TrainingSpec's field defaults)."""
    names = JOB_HYPERPARAMETERS + (DPO_HYPERPARAMETERS if method == "dpo" else ())
    return {name: TrainingSpec.model_fields[name].default for name in names}


HYPERPARAMETER_HELP: dict[str, tuple[Any, str]] = {
    name: ("random" if name == "seed" else TrainingSpec.model_fields[name].default, text)
    for name, text in _HELP.items()
}
BASE_LEARNING_RATE: float = TrainingSpec.model_fields["learning_rate"].default  # learning_rate_multiplier scales it
