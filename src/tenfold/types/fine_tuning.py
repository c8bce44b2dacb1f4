"""Request bodies of ``/v1/fine_tuning/jobs`` and ``/v1/adapters``.

Owns: the OpenAI job-create shape (``hyperparameters``, ``method.supervised.hyperparameters`` or
``method.dpo.hyperparameters``, ``integrations`` of type ``wandb``) plus our fields (LoRA, packing, schedule,
``from_checkpoint``, ``dry_run``) and seed 002's (``training_method``, ``wandb_api_key``), and the bounds of
every hyperparameter as field types (``NEpochs``, ``LoraR``, …), which ``TrainingSpec`` uses too, so a bound
is written once and the OpenAPI document states it. Defaults live in ``TrainingSpec``; resolution into one
(and the rule that ``training_method`` and ``method`` agree) happens in ``tenfold.jobs.submit``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Discriminator, Field, SecretStr, Tag, model_validator

from tenfold.types.fields import Metadata, Request, hinted_pattern

Auto = Literal["auto"]
NEpochs = Annotated[int, Field(ge=1, le=100)]
NProcs = Annotated[int, Field(ge=1, le=64)]
BatchSize = Annotated[int, Field(ge=1, le=1024)]
LearningRate = Annotated[float, Field(gt=0, le=1.0)]
LrScheduler = Literal["linear", "cosine", "constant"]
WarmupRatio = Annotated[float, Field(ge=0, lt=1)]
WeightDecay = Annotated[float, Field(ge=0, le=1)]
LoraR = Annotated[int, Field(ge=1, le=512)]
LoraAlpha = Annotated[int, Field(ge=1, le=4096)]
LoraDropout = Annotated[float, Field(ge=0, lt=1)]
ModuleName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$")]
TargetModules = Annotated[list[ModuleName], Field(min_length=1, max_length=64)] | Literal["all-linear"]
MaxSeqLength = Annotated[int, Field(ge=16, le=131072)]
CheckpointEvery = Annotated[int, Field(ge=0)]
NCheckpoints = Annotated[int, Field(ge=0, le=1000)]
TrainOnInputs = Literal["auto", True, False]
Seed = Annotated[int, Field(ge=0, lt=2**31)]
DpoBeta = Annotated[float, Field(gt=0, le=10)]
EvalEvery = Annotated[int, Field(ge=0)]
Suffix = Annotated[str, Field(max_length=64, pattern=r"^[A-Za-z0-9_.-]*$")]
# "<job id>" (its final adapter) or "<job id>/step-<N>" (a checkpoint)
AdapterName = Annotated[str, Field(pattern=hinted_pattern(r"^ftjob-[A-Za-z0-9]+(/step-[0-9]+)?$",
                                                          "must be '<job id>' or '<job id>/step-<N>' (e.g. "
                                                          "ftjob-…/step-20)"), max_length=128,
                                   examples=["ftjob-0123abcd", "ftjob-0123abcd/step-20"])]
# What a deploy names: a job's adapter or checkpoint, or an imported adapter's adp-… id or name
DeployName = Annotated[str, Field(pattern=hinted_pattern(
    r"^(ftjob-[A-Za-z0-9]+(/step-[0-9]+)?|[A-Za-z0-9][A-Za-z0-9._-]{0,63})$",
    "must be '<job id>', '<job id>/step-<N>', or an imported adapter's adp-… id or name"), max_length=128,
    examples=["ftjob-0123abcd", "ftjob-0123abcd/step-20", "adp-0123abcd"])]


class Hyperparameters(Request):
    n_epochs: NEpochs | Auto | None = None
    batch_size: BatchSize | Literal["max"] | Auto | None = None
    learning_rate: LearningRate | Auto | None = None
    learning_rate_multiplier: Annotated[float, Field(gt=0, le=1000)] | Auto | None = None
    lora_r: LoraR | Auto | None = None
    lora_alpha: LoraAlpha | Auto | None = None
    lora_dropout: LoraDropout | Auto | None = None
    checkpoint_every: CheckpointEvery | Auto | None = None
    warmup_ratio: WarmupRatio | Auto | None = None
    max_length: MaxSeqLength | Auto | None = None  # old name of max_seq_length
    max_seq_length: MaxSeqLength | Auto | None = None
    train_on_inputs: TrainOnInputs | None = None
    lr_scheduler: LrScheduler | Auto | None = None
    target_modules: TargetModules | Auto | None = None
    packing: bool | Auto | None = None
    n_checkpoints: NCheckpoints | Auto | None = None
    eval_every: EvalEvery | Auto | None = None
    weight_decay: WeightDecay | Auto | None = None
    beta: DpoBeta | Auto | None = None  # OpenAI's name for dpo_beta
    dpo_beta: DpoBeta | Auto | None = None
    n_procs: NProcs | Auto | None = None  # processes the run is spread over (torchrun)


class SupervisedMethod(Request):
    hyperparameters: Hyperparameters | None = None


class SupervisedJobMethod(Request):
    type: Literal["supervised"] = "supervised"
    supervised: SupervisedMethod | None = None


class DpoJobMethod(Request):
    type: Literal["dpo"]
    dpo: SupervisedMethod | None = None


def _method_type(data: Any) -> str | None:
    kind = (data.get("type") if isinstance(data, dict) else getattr(data, "type", None)) or "supervised"
    return f"type={kind}" if kind in ("supervised", "dpo") else None


# OpenAI's ``method``: ``{"type": "supervised", "supervised": {...}}`` or ``{"type": "dpo", "dpo": {...}}``; the
# tags ("type=…") stay out of error paths (``fields.field_path``).
Method = Annotated[Annotated[SupervisedJobMethod, Tag("type=supervised")] | Annotated[DpoJobMethod, Tag("type=dpo")],
                   Discriminator(_method_type, custom_error_type="invalid_method",
                                 custom_error_message="type must be supervised or dpo")]


# W&B names: no characters W&B refuses in project and entity names.
WandbName = Annotated[str, Field(min_length=1, max_length=128, pattern=hinted_pattern(
    r"^[^/\\#?%:]+$", "must not contain any of / \\ # ? % : (W&B refuses them in project and entity names)"))]
WandbTag = Annotated[str, Field(min_length=1, max_length=64)]


class WandbSettings(Request):
    """OpenAI's ``integrations[].wandb``; also what a job's spec records (never a key)."""

    project: WandbName = Field(description="The W&B project the run is logged to.")
    name: Annotated[str, Field(min_length=1, max_length=128)] | None = Field(
        default=None, description="The run's display name (default: the job id).")
    entity: WandbName | None = Field(default=None, description="The W&B team or user (default: the key's own).")
    tags: Annotated[list[WandbTag], Field(max_length=50)] | None = Field(
        default=None, description="Tags for the run (the server adds tenfold/finetune, tenfold/<base model> and "
                                  "tenfold/<job id>).")


class WandbIntegration(Request):
    type: Literal["wandb"] = Field(description="The one integration: Weights & Biases.")
    wandb: WandbSettings

    @model_validator(mode="before")
    @classmethod
    def _known_type(cls, data: Any) -> Any:
        if isinstance(data, dict) and "type" in data and data["type"] != "wandb":
            raise ValueError(f"integration type {data['type']!r} is not supported; the one integration is "
                             "'wandb' (Weights & Biases): {\"type\": \"wandb\", \"wandb\": {\"project\": \"...\"}}")
        return data


def _printable(key: SecretStr) -> SecretStr:
    if not all("!" <= ch <= "~" for ch in key.get_secret_value()):
        raise ValueError("must be printable ASCII without spaces (a W&B API key)")
    return key


WandbApiKey = Annotated[SecretStr, Field(min_length=1, max_length=512, json_schema_extra={"pattern": "^[!-~]+$"}),
                        AfterValidator(_printable)]


class JobCreate(Request):
    model: str = Field(min_length=1, max_length=256, description="The base model to fine-tune.")
    training_file: str = Field(min_length=1, max_length=64)
    validation_file: str | None = Field(default=None, min_length=1, max_length=64)
    suffix: Suffix | None = None
    seed: Seed | None = None
    hyperparameters: Hyperparameters | None = None
    method: Method | None = None
    # Seed 002's name for method.type ("sft" = "supervised"); given with ``method``, the two must agree.
    training_method: Literal["sft", "supervised", "dpo"] | None = Field(
        default=None, description="Another name for method.type: sft (= supervised) or dpo.")
    metadata: Metadata | None = None  # stored and returned on the job
    integrations: Annotated[list[WandbIntegration], Field(max_length=1)] | None = Field(
        default=None, description="Weights & Biases: [{\"type\": \"wandb\", \"wandb\": {\"project\", \"name\", "
                                  "\"entity\", \"tags\"}}]; the run logs losses, learning rate and tokens/s per step.")
    # Never stored: held in the server's memory and handed to the trainer's environment (docs/api.md).
    wandb_api_key: WandbApiKey | None = Field(
        default=None, description="The W&B API key for this job's run (never stored or returned; needs a "
                                  "worker in the server process). Alone, it logs to project 'tenfold'.")
    # Continued fine-tuning: start from "<job id>" (its final adapter) or "<job id>/step-<N>".
    from_checkpoint: AdapterName | None = None
    # Validate and estimate tokens and price, create nothing.
    dry_run: bool = False


class EvaluationCreate(Request):
    models: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(
        min_length=1, max_length=8, description="base model, <job id> or <job id>/step-<N>")
    examples: list[dict[str, Any]] = Field(
        min_length=1, max_length=1000, description="JSONL rows: messages, prompt/completion, or prompt + expected")
    max_examples: int = Field(default=100, ge=1, le=1000)
    max_new_tokens: int = Field(default=32, ge=1, le=512)


class AdapterDeploy(Request):
    """``POST /v1/adapters`` (deploy) and ``POST /v1/adapters/plans`` (what a deploy would do)."""

    model: DeployName = Field(description="<job id> (its final adapter), <job id>/step-<N> (a checkpoint), or an "
                                          "imported adapter's adp-… id or name")
    deployment: str | None = Field(default=None, min_length=1, max_length=64, examples=["dep-0123abcd"],
                                   description="A dedicated deployment to serve it on (as <job>#<deployment>); "
                                               "default: shared serving.")
    verify: bool = True
