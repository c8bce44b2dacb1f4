"""Request bodies of ``/v1/fine_tuning/jobs`` and ``/v1/adapters``.

Owns: the OpenAI job-create shape (``hyperparameters``, ``method.supervised.hyperparameters`` or
``method.dpo.hyperparameters``) plus our fields (LoRA, packing, schedule, ``from_checkpoint``, ``dry_run``).
Bounds live in ``TrainingSpec``; resolution into one happens in ``tenfold.jobs.submit``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tenfold.types.fields import Metadata

Auto = Literal["auto"]


class Hyperparameters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_epochs: int | Auto | None = None
    batch_size: int | Auto | None = None
    learning_rate: float | Auto | None = None
    learning_rate_multiplier: float | Auto | None = None
    lora_r: int | Auto | None = None
    lora_alpha: int | Auto | None = None
    lora_dropout: float | Auto | None = None
    checkpoint_every: int | Auto | None = None
    warmup_ratio: float | Auto | None = None
    max_length: int | Auto | None = None  # old name of max_seq_length
    max_seq_length: int | Auto | None = None
    train_on_inputs: bool | Auto | None = None
    lr_scheduler: str | None = None
    target_modules: list[str] | str | None = None
    packing: bool | Auto | None = None
    n_checkpoints: int | Auto | None = None
    eval_every: int | Auto | None = None
    weight_decay: float | Auto | None = None
    beta: float | Auto | None = None  # OpenAI's name for dpo_beta
    dpo_beta: float | Auto | None = None


class SupervisedMethod(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hyperparameters: Hyperparameters | None = None


class Method(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["supervised", "dpo"] = "supervised"
    supervised: SupervisedMethod | None = None
    dpo: SupervisedMethod | None = None


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1)
    training_file: str = Field(min_length=1)
    validation_file: str | None = None
    suffix: str | None = Field(default=None, max_length=64)
    seed: int | None = None
    hyperparameters: Hyperparameters | None = None
    method: Method | None = None
    metadata: Metadata | None = None  # stored and returned on the job
    integrations: list[dict] | None = None  # refused unless empty: no integration is supported yet
    # Continued fine-tuning: start from "<job id>" (its final adapter) or "<job id>/step-<N>".
    from_checkpoint: str | None = Field(default=None, min_length=1)
    # Validate and estimate tokens and price, create nothing.
    dry_run: bool = False

    @model_validator(mode="after")
    def _unsupported(self):
        if self.integrations:
            raise ValueError("integrations: no integration (such as Weights & Biases) is supported yet; leave it "
                             "out and follow the job's metrics with GET /v1/fine_tuning/jobs/{id}/metrics")
        return self


class EvaluationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    models: list[str] = Field(min_length=1, max_length=8, description="base model, <job id> or <job id>/step-<N>")
    examples: list = Field(min_length=1, description="JSONL rows: messages, prompt/completion, or prompt + expected")
    max_examples: int = Field(default=100, ge=1, le=1000)
    max_new_tokens: int = Field(default=32, ge=1, le=512)


class AdapterDeploy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1, description="<job id> or <job id>/step-<N>")
    dry_run: bool = False
    verify: bool = True
