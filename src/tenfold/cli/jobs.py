"""``tenfold train``, ``tenfold jobs list|get|events|cancel`` and ``tenfold checkpoints``.

Owns: turning flags into a job request (hyperparameters by their API names), the jobs and checkpoints
views. Does not own: the progress bar (``tenfold.cli.follow``) or training itself (the server's workers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from tenfold.cli.follow import event_line, follow_job
from tenfold.cli.output import (
    CliError, client, console, dim, fmt_float, fmt_time, print_json, print_table, say,
)

DEFAULT_BASE_MODEL = "smollm2-135m-instruct"
JSON_OPT = typer.Option(False, "--json", help="Print the raw JSON answer.")

app = typer.Typer(help="List, inspect, follow and cancel fine-tuning jobs.", no_args_is_help=True)


def train(
    path: Path = typer.Argument(..., help="Training data: a JSONL file."),
    model: str = typer.Option(DEFAULT_BASE_MODEL, "--model", help="Base model to fine-tune."),
    epochs: int | None = typer.Option(None, "--epochs", help="n_epochs"),
    batch_size: int | None = typer.Option(None, "--batch-size", help="batch_size"),
    learning_rate: float | None = typer.Option(None, "--learning-rate", help="learning_rate (absolute)"),
    lora_r: int | None = typer.Option(None, "--lora-r", help="LoRA rank"),
    lora_alpha: int | None = typer.Option(None, "--lora-alpha", help="LoRA alpha"),
    checkpoint_every: int | None = typer.Option(None, "--checkpoint-every", help="save every N steps (0 = final only)"),
    seed: int | None = typer.Option(None, "--seed"),
    suffix: str | None = typer.Option(None, "--suffix"),
    follow: bool = typer.Option(True, "--follow/--no-follow", help="Follow progress until the job ends."),
) -> None:
    """Upload PATH, start a LoRA fine-tune, and follow it with a progress bar."""
    if not path.is_file():
        raise CliError(f"no such file: {path}")
    hyper: dict[str, Any] = {
        key: value
        for key, value in (
            ("n_epochs", epochs), ("batch_size", batch_size), ("learning_rate", learning_rate),
            ("lora_r", lora_r), ("lora_alpha", lora_alpha), ("checkpoint_every", checkpoint_every),
        )
        if value is not None
    }
    api = client()
    uploaded = api.files.upload(path)
    say(f"uploaded {path.name} as {uploaded['id']}")
    job = api.jobs.create(model, uploaded["id"], hyperparameters=hyper or None, seed=seed, suffix=suffix)
    say(f"created job {job['id']} on {job.get('model', model)} ({job.get('status')})", "bold")
    if not follow:
        dim(f"follow it: tenfold jobs events {job['id']} --follow    then: tenfold deploy {job['id']}")
        return
    dim("Ctrl-C stops following, not the job.")
    final = follow_job(api, job["id"])
    if final.get("status") != "succeeded":
        raise typer.Exit(1)


@app.command("list")
def list_jobs(limit: int = typer.Option(20, "--limit"), as_json: bool = JSON_OPT) -> None:
    """List your fine-tuning jobs, newest first."""
    page = client().jobs.list(limit=limit)
    if as_json:
        print_json(page)
        return
    rows = []
    for job in page.get("data", []):
        prog = job.get("progress") or {}
        step = f"{prog.get('step', 0)}/{prog.get('total_steps')}" if prog.get("total_steps") else "-"
        rows.append((job["id"], job.get("model"), job.get("status"), step, fmt_float(prog.get("loss")),
                     fmt_time(job.get("created_at"))))
    print_table(None, ["job", "base model", "status", "step", "loss", "created"], rows,
                "no jobs yet: tenfold train PATH --model <base model>")


@app.command("get")
def get_job(job_id: str, as_json: bool = JSON_OPT) -> None:
    """Show one job: status, hyperparameters, progress and checkpoints."""
    job = client().jobs.get(job_id)
    if as_json:
        print_json(job)
        return
    prog = job.get("progress") or {}
    say(f"{job['id']}  {job.get('status')}", "bold")
    for label, value in (
        ("base model", job.get("model")), ("training file", job.get("training_file")),
        ("created", fmt_time(job.get("created_at"))), ("finished", fmt_time(job.get("finished_at"))),
        ("progress", f"step {prog.get('step', '-')}/{prog.get('total_steps', '-')}, loss {fmt_float(prog.get('loss'))}"),
        ("trained tokens", job.get("trained_tokens")),
        ("hyperparameters", ", ".join(f"{k}={v}" for k, v in (job.get("hyperparameters") or {}).items())),
        ("checkpoints", ", ".join(job.get("checkpoints") or []) or "-"),
    ):
        say(f"{label:>16}: {value if value is not None else '-'}")
    if job.get("error"):
        say(f"{'error':>16}: {job['error'].get('message')}", "red")


@app.command("events")
def events(
    job_id: str,
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new events until the job ends."),
    limit: int = typer.Option(100, "--limit"),
    as_json: bool = JSON_OPT,
) -> None:
    """Print a job's events, oldest first."""
    api = client()
    if follow:
        dim("Ctrl-C stops following, not the job.")
        final = follow_job(api, job_id, bar=False)
        if final.get("status") != "succeeded":
            raise typer.Exit(1)
        return
    page = api.jobs.events(job_id, limit=limit, order="asc")
    if as_json:
        print_json(page)
        return
    if not page.get("data"):
        dim("no events yet")
    for event in page.get("data", []):
        console.print(event_line(event), soft_wrap=True)


@app.command("cancel")
def cancel(job_id: str) -> None:
    """Cancel a queued or running job (saved checkpoints stay deployable)."""
    job = client().jobs.cancel(job_id)
    say(f"cancel requested for {job_id}: status {job.get('status')}")


def checkpoints(job_id: str = typer.Argument(..., help="A job id (ftjob-…)."), as_json: bool = JSON_OPT) -> None:
    """List a job's deployable checkpoints."""
    page = client().jobs.checkpoints(job_id)
    if as_json:
        print_json(page)
        return
    rows = [
        (c.get("fine_tuned_model_checkpoint") or c.get("id"), c.get("step_number"),
         fmt_float((c.get("metrics") or {}).get("train_loss")), fmt_time(c.get("created_at")))
        for c in page.get("data", [])
    ]
    print_table(None, ["checkpoint", "step", "train loss", "created"], rows, f"no checkpoints saved yet for {job_id}")
    if rows:
        dim(f"deploy one: tenfold deploy {rows[0][0]}")
