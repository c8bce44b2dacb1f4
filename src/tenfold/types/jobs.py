"""Responses of ``/v1/fine_tuning/jobs``: the job, its events, checkpoints, metrics series and the dry-run
estimate, plus ``/v1/fine_tuning/evaluations``.

Owns: OpenAI's ``fine_tuning.job`` shape (``integrations`` included, never a key) with our fields
(``progress``, ``checkpoints``, ``has_final_adapter``, ``from_checkpoint``), ``fine_tuning.job.event``,
``fine_tuning.job.checkpoint``, the per-step metrics list, ``fine_tuning.job.estimate`` (training and
evaluation tokens apart) and ``fine_tuning.evaluation``. Does not own: the create body
(``tenfold.types.fine_tuning``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tenfold.types.common import ListResponse, ResponseModel

JobStatus = Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL_JOB_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


class JobError(ResponseModel):
    code: str
    message: str
    param: str | None = None


class MethodDetails(ResponseModel):
    hyperparameters: dict[str, Any]


class JobMethod(ResponseModel):
    type: Literal["supervised", "dpo"]
    supervised: MethodDetails | None = None
    dpo: MethodDetails | None = None


class WandbRunSettings(ResponseModel):
    project: str
    name: str | None = Field(default=None, description="the run's name (the job id unless one was given)")
    entity: str | None = None
    tags: list[str] | None = None


class JobIntegration(ResponseModel):
    """OpenAI's integration object; never carries an API key."""

    type: Literal["wandb"]
    wandb: WandbRunSettings


class JobProgress(ResponseModel):
    step: int
    total_steps: int | None = None
    loss: float | None = Field(default=None, description="training loss of the latest logged step")
    eta_seconds: float | None = None


class FineTuningJob(ResponseModel):
    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    model: str = Field(description="the base model")
    created_at: int
    started_at: int | None = None
    finished_at: int | None = None
    fine_tuned_model: str | None = Field(default=None, description="the job id once it succeeded: deploy it "
                                                                   "and call it by that name")
    organization_id: str
    status: JobStatus
    error: JobError | None = None
    hyperparameters: dict[str, Any] = Field(description="the resolved hyperparameters, defaults included")
    method: JobMethod
    training_file: str
    validation_file: str | None = None
    result_files: list[str] = []
    trained_tokens: int | None = None
    seed: int
    suffix: str | None = None
    user_provided_suffix: str | None = None
    estimated_finish: int | None = None
    integrations: list[JobIntegration] = Field(default=[], description="[{\"type\": \"wandb\", \"wandb\": "
                                                                    "{project, name, entity, tags}}] when the run "
                                                                    "logs to Weights & Biases")
    metadata: dict[str, str] | None = None
    progress: JobProgress
    checkpoints: list[str] = Field(default=[], description="saved checkpoints, <job id>/step-<N>, oldest first")
    has_final_adapter: bool = False
    from_checkpoint: str | None = None

    @property
    def done(self) -> bool:
        """Whether the job ended (succeeded, failed or cancelled)."""
        return self.status in TERMINAL_JOB_STATUSES


class JobEvent(ResponseModel):
    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: Literal["info", "warn", "error"]
    message: str
    type: Literal["message", "metrics"]
    data: dict[str, Any] | None = Field(default=None, description="for metrics events: step, total_steps, loss, "
                                                                  "tokens_per_second, eta_seconds, …")


class CheckpointMetrics(ResponseModel):
    step: int
    train_loss: float | None = None
    train_mean_token_accuracy: float | None = None
    train_reward_accuracy: float | None = None
    valid_loss: float | None = None
    valid_mean_token_accuracy: float | None = None
    valid_reward_margin: float | None = None
    valid_reward_accuracy: float | None = None


class JobCheckpoint(ResponseModel):
    id: str = Field(description="<job id>/step-<N>")
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    step_number: int
    metrics: CheckpointMetrics


class MetricsPoint(ResponseModel):
    """One logged training step; fields the step did not log are absent."""

    step: int
    total_steps: int | None = None
    epoch: float | None = None
    train_loss: float | None = None
    valid_loss: float | None = None
    learning_rate: float | None = None
    tokens: int | None = None
    tokens_per_second: float | None = None
    elapsed_seconds: float | None = None
    token_accuracy: float | None = None
    reward_margin: float | None = None
    reward_accuracy: float | None = None
    valid_mean_token_accuracy: float | None = None
    valid_reward_margin: float | None = None
    valid_reward_accuracy: float | None = None


class JobMetrics(ListResponse[MetricsPoint]):
    """The per-step series of one job, oldest first (not paginated)."""

    job_id: str


class JobEstimate(ResponseModel):
    """What ``dry_run: true`` answers: the validated request's tokens, steps and price; nothing is created."""

    object: Literal["fine_tuning.job.estimate"] = "fine_tuning.job.estimate"
    model: str
    method: Literal["sft", "dpo"]
    n_examples: int
    tokens_per_epoch: int
    n_epochs: int
    total_steps: int
    estimated_trained_tokens: int = Field(description="n_epochs × tokens_per_epoch: the training part, what the "
                                                      "job reports as trained_tokens")
    n_validation_examples: int = 0
    validation_tokens_per_eval: int = Field(default=0, description="tokens of one pass over the validation file")
    eval_every: int = Field(default=0, description="the resolved eval_every (0: only at checkpoints and the end)")
    n_evals: int = Field(default=0, description="validation passes the run makes (every eval_every steps, at "
                                                "checkpoints and at the end)")
    estimated_evaluation_tokens: int = Field(default=0, description="n_evals × validation_tokens_per_eval")
    estimated_total_tokens: int = Field(description="estimated_trained_tokens + estimated_evaluation_tokens: what "
                                                    "is billed")
    truncated_examples: int
    skipped_examples: int
    training_price_per_mtok_micro_usd: int
    estimated_cost_micro_usd: int
    hyperparameters: dict[str, Any]
    from_checkpoint: str | None = None


class EvaluationResult(ResponseModel):
    model: str = Field(description="the base model, <job id> or <job id>/step-<N>")
    adapter: bool
    n_examples: int
    loss: float | None = None
    n_loss_tokens: int
    exact_match: float | None = None
    n_exact: int
    n_with_expected: int


class Evaluation(ResponseModel):
    object: Literal["fine_tuning.evaluation"] = "fine_tuning.evaluation"
    base_model: str
    n_examples: int
    data: list[EvaluationResult]


__all__ = ["FineTuningJob", "JobIntegration", "WandbRunSettings", "JobStatus", "JobError", "JobMethod",
           "MethodDetails", "JobProgress", "JobEvent",
           "JobCheckpoint", "CheckpointMetrics", "JobMetrics", "MetricsPoint", "JobEstimate", "Evaluation",
           "EvaluationResult", "TERMINAL_JOB_STATUSES"]
