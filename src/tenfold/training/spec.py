"""``TrainingSpec``: the validated, complete description of one fine-tuning run, stored as JSON on the job.

Owns: hyperparameter names, defaults and bounds. Does not own: how the api parses OpenAI-style request
bodies into it (``tenfold.api.routes_fine_tuning``) or how a recipe runs it (``tenfold.training.sft``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TrainingSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Literal["supervised"] = "supervised"
    base_model: str
    # Absolute path of the base model folder (safetensors + tokenizer), resolved by the worker.
    base_model_path: str | None = None
    training_file: str  # absolute path of the JSONL on disk
    validation_file: str | None = None
    output_dir: str  # checkpoints go to <output_dir>/step-<N>, the final adapter to <output_dir>/final

    n_epochs: int = Field(default=3, ge=1, le=100)
    batch_size: int = Field(default=8, ge=1, le=1024)
    learning_rate: float = Field(default=1e-3, gt=0, le=1.0)
    warmup_ratio: float = Field(default=0.0, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0)
    max_grad_norm: float = Field(default=1.0, gt=0)
    lora_r: int = Field(default=16, ge=1, le=512)
    lora_alpha: int = Field(default=32, ge=1, le=4096)
    lora_dropout: float = Field(default=0.0, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    max_length: int = Field(default=1024, ge=16, le=131072)
    checkpoint_every: int = Field(default=0, ge=0)  # steps; 0 = only the final adapter
    train_on_inputs: Literal["auto", True, False] = "auto"
    seed: int = 42
    logging_steps: int = Field(default=1, ge=1)
    torch_threads: int = Field(default=0, ge=0)
    resume_from: str | None = None  # a checkpoint folder holding resume state
