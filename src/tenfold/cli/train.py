"""``tenfold train``: upload a file, start a LoRA fine-tune (or estimate one with ``--dry-run``) and follow it.

Owns: turning flags into a job request (hyperparameters by their API names, ``--method``/``--training-method``,
the W&B flags as OpenAI's ``integrations`` plus ``wandb_api_key``) and printing the estimate. Does not own:
the progress bar (``tenfold.cli.follow``), the jobs views (``tenfold.cli.jobs``) or training itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from tenfold.cli.files import contents
from tenfold.cli.follow import follow_job
from tenfold.cli.output import CliError, client, dim, fmt_usd, say
from tenfold.training.spec import HYPERPARAMETER_HELP
from tenfold.types.jobs import JobEstimate

DEFAULT_BASE_MODEL = "smollm2-135m-instruct"


def _hp(name: str) -> str:
    default, text = HYPERPARAMETER_HELP[name]
    return f"{name}: {text}. Default: {default}."


def train(
    path: Path = typer.Argument(..., help="Training data: a JSONL file (messages, text, prompt/completion, or "
                                          "preference pairs for --method dpo; docs/api.md lists the formats)."),
    model: str = typer.Option(DEFAULT_BASE_MODEL, "--model", help="Base model to fine-tune."),
    method: str = typer.Option("sft", "--method", "--training-method", help=_hp("method")),
    epochs: int | None = typer.Option(None, "--epochs", help=_hp("n_epochs")),
    batch_size: str | None = typer.Option(None, "--batch-size", help=_hp("batch_size")),
    learning_rate: float | None = typer.Option(None, "--learning-rate", help=_hp("learning_rate")),
    lr_scheduler: str | None = typer.Option(None, "--lr-scheduler", help=_hp("lr_scheduler")),
    warmup_ratio: float | None = typer.Option(None, "--warmup-ratio", help=_hp("warmup_ratio")),
    lora_r: int | None = typer.Option(None, "--lora-r", help=_hp("lora_r")),
    lora_alpha: int | None = typer.Option(None, "--lora-alpha", help=_hp("lora_alpha")),
    lora_dropout: float | None = typer.Option(None, "--lora-dropout", help=_hp("lora_dropout")),
    target_modules: str | None = typer.Option(None, "--target-modules",
                                              help=_hp("target_modules") + " Comma-separated names."),
    max_seq_length: int | None = typer.Option(None, "--max-seq-length", help=_hp("max_seq_length")),
    train_on_inputs: str | None = typer.Option(None, "--train-on-inputs", help=_hp("train_on_inputs")),
    packing: bool | None = typer.Option(None, "--packing/--no-packing", help=_hp("packing")),
    checkpoint_every: int | None = typer.Option(None, "--checkpoint-every", help=_hp("checkpoint_every")),
    n_checkpoints: int | None = typer.Option(None, "--n-checkpoints", help=_hp("n_checkpoints")),
    dpo_beta: float | None = typer.Option(None, "--dpo-beta", help=_hp("dpo_beta")),
    eval_every: int | None = typer.Option(None, "--eval-every", help=_hp("eval_every")),
    n_procs: int | None = typer.Option(None, "--n-procs", help=_hp("n_procs")),
    validation_file: Path | None = typer.Option(None, "--validation-file", help="Held-out JSONL for valid_loss."),
    from_checkpoint: str | None = typer.Option(None, "--from-checkpoint",
                                               help="Continue from <job id> or <job id>/step-N (same base model)."),
    seed: int | None = typer.Option(None, "--seed", help=_hp("seed")),
    suffix: str | None = typer.Option(None, "--suffix", help="A label for the job (letters, digits, - _ .)."),
    wandb_project: str | None = typer.Option(None, "--wandb-project",
                                             help="Log the run to this Weights & Biases project."),
    wandb_name: str | None = typer.Option(None, "--wandb-name", help="W&B run name (default: the job id)."),
    wandb_entity: str | None = typer.Option(None, "--wandb-entity", help="W&B team or user."),
    wandb_tags: list[str] | None = typer.Option(None, "--wandb-tag", help="A W&B run tag (repeatable)."),
    wandb_api_key: str | None = typer.Option(
        None, "--wandb-api-key", help="W&B API key for this job, sent once and never stored (e.g. "
                                      "--wandb-api-key \"$WANDB_API_KEY\"); default: the server's WANDB_API_KEY."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate and estimate tokens and cost; train nothing."),
    follow: bool = typer.Option(True, "--follow/--no-follow", help="Follow progress until the job ends."),
) -> None:
    """Upload PATH, start a LoRA fine-tune (SFT or DPO), and follow it with a progress bar.

    Hyperparameters left out take the defaults shown. The server checks them all, and the data, before
    anything runs; a rejected value is named. --dry-run prints the token and cost estimate only.
    """
    if not path.is_file():
        raise CliError(f"no such file: {path}")
    if wandb_project is None and (wandb_name or wandb_entity or wandb_tags):
        raise CliError("--wandb-name, --wandb-entity and --wandb-tag need --wandb-project")
    if validation_file is not None and not validation_file.is_file():
        raise CliError(f"no such file: {validation_file}")
    size: int | str | None = batch_size
    if batch_size is not None and batch_size != "max":
        if not batch_size.isdigit():
            raise CliError(f"--batch-size must be a number or 'max', got {batch_size!r}")
        size = int(batch_size)
    inputs: bool | str | None = train_on_inputs
    if train_on_inputs is not None:
        choices = {"auto": "auto", "true": True, "false": False}
        if train_on_inputs.lower() not in choices:
            raise CliError("--train-on-inputs must be auto, true or false")
        inputs = choices[train_on_inputs.lower()]
    modules = [m.strip() for m in target_modules.split(",") if m.strip()] if target_modules else None
    if target_modules == "all-linear":
        modules = None
    hyper: dict[str, Any] = {
        key: value
        for key, value in (
            ("n_epochs", epochs), ("batch_size", size), ("learning_rate", learning_rate),
            ("lr_scheduler", lr_scheduler), ("warmup_ratio", warmup_ratio), ("lora_r", lora_r),
            ("lora_alpha", lora_alpha), ("lora_dropout", lora_dropout), ("target_modules", modules),
            ("max_seq_length", max_seq_length), ("train_on_inputs", inputs), ("packing", packing),
            ("checkpoint_every", checkpoint_every), ("n_checkpoints", n_checkpoints), ("dpo_beta", dpo_beta),
            ("eval_every", eval_every),
            ("n_procs", n_procs),
        )
        if value is not None
    }
    api = client()
    uploaded = api.files.create(file=path, purpose="fine-tune")
    say(f"uploaded {path.name} as {uploaded.id} ({contents(uploaded)})")
    valid_id = None
    if validation_file is not None:
        valid_id = api.files.create(file=validation_file, purpose="fine-tune").id
        say(f"uploaded {validation_file.name} as {valid_id}")
    request: dict[str, Any] = dict(model=model, training_file=uploaded.id, hyperparameters=hyper or None, seed=seed,
                                   suffix=suffix, validation_file=valid_id, method=method,
                                   from_checkpoint=from_checkpoint, wandb_api_key=wandb_api_key,
                                   integrations=_wandb(wandb_project, wandb_name, wandb_entity, wandb_tags))
    if dry_run:
        print_estimate(api.fine_tuning.jobs.estimate(**request))
        return
    job = api.fine_tuning.jobs.create(**request)
    say(f"created job {job.id} on {job.model} ({job.status})", "bold")
    if not follow:
        dim(f"follow it: tenfold jobs follow {job.id}    then: tenfold deploy {job.id}")
        return
    dim("Ctrl-C stops following, not the job.")
    final = follow_job(api, job.id)
    if final.status != "succeeded":
        raise typer.Exit(1)


def _wandb(project: str | None, name: str | None, entity: str | None, tags: list[str] | None) -> list[dict] | None:
    if project is None:
        return None
    settings = {"project": project, "name": name, "entity": entity, "tags": tags or None}
    return [{"type": "wandb", "wandb": {k: v for k, v in settings.items() if v is not None}}]


def print_estimate(est: JobEstimate) -> None:
    say(f"dry run: nothing was created. {est.method} on {est.model}", "bold")
    for label, value in (
        ("examples", est.n_examples), ("tokens per epoch", est.tokens_per_epoch),
        ("epochs", est.n_epochs), ("steps", est.total_steps),
        ("training tokens", est.estimated_trained_tokens),
        ("validation", f"{est.n_evals} evaluations x {est.validation_tokens_per_eval} tokens = "
                       f"{est.estimated_evaluation_tokens}"),
        ("billed tokens", est.estimated_total_tokens),
        ("price", f"{fmt_usd(est.training_price_per_mtok_micro_usd)} per 1M tokens"),
        ("estimated cost", fmt_usd(est.estimated_cost_micro_usd)),
        ("truncated", est.truncated_examples), ("skipped", est.skipped_examples),
    ):
        say(f"{label:>16}: {value}")
