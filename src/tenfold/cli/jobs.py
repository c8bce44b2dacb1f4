"""``tenfold jobs list|get|events|follow|metrics|cancel|resume``, ``tenfold checkpoints`` and ``tenfold eval``
(``tenfold train`` lives in ``tenfold.cli.train``; ``train`` is re-exported here for the app).

Owns: the jobs and checkpoints views. Does not own: starting a job (``tenfold.cli.train``), the progress bar
(``tenfold.cli.follow``) or training itself (the server's workers).
"""

from __future__ import annotations

from pathlib import Path

import typer

from tenfold.cli.follow import event_line, follow_job
from tenfold.cli.output import (
    CliError,
    client,
    console,
    dim,
    fmt_float,
    fmt_time,
    print_json,
    print_table,
    say,
)
from tenfold.cli.train import train
from tenfold.sdk import Tenfold

__all__ = ["app", "checkpoints", "evaluate", "train"]
JSON_OPT = typer.Option(False, "--json", help="Print the raw JSON answer.")

app = typer.Typer(help="List, inspect, follow and cancel fine-tuning jobs.", no_args_is_help=True)


@app.command("list")
def list_jobs(limit: int = typer.Option(20, "--limit"), as_json: bool = JSON_OPT) -> None:
    """List your fine-tuning jobs, newest first."""
    page = client().fine_tuning.jobs.list(limit=limit)
    if as_json:
        print_json(page)
        return
    rows = []
    for job in page.data:
        prog = job.progress
        step = f"{prog.step}/{prog.total_steps}" if prog.total_steps else "-"
        rows.append((job.id, job.model, job.status, step, fmt_float(prog.loss), fmt_time(job.created_at)))
    print_table(None, ["job", "base model", "status", "step", "loss", "created"], rows,
                "no jobs yet: tenfold train PATH --model <base model>")


@app.command("get")
def get_job(job_id: str, as_json: bool = JSON_OPT) -> None:
    """Show one job: status, hyperparameters, progress and checkpoints."""
    job = client().fine_tuning.jobs.retrieve(job_id)
    if as_json:
        print_json(job)
        return
    prog = job.progress
    total = "-" if prog.total_steps is None else prog.total_steps
    say(f"{job.id}  {job.status}", "bold")
    for label, value in (
        ("base model", job.model), ("training file", job.training_file),
        ("created", fmt_time(job.created_at)), ("finished", fmt_time(job.finished_at)),
        ("progress", f"step {prog.step}/{total}, loss {fmt_float(prog.loss)}"),
        ("trained tokens", job.trained_tokens),
        ("hyperparameters", ", ".join(f"{k}={v}" for k, v in job.hyperparameters.items())),
        ("checkpoints", ", ".join(job.checkpoints) or "-"),
        ("W&B", ", ".join(f"{i.wandb.entity + '/' if i.wandb.entity else ''}{i.wandb.project} ({i.wandb.name})"
                          for i in job.integrations) or "-"),
    ):
        say(f"{label:>16}: {value if value is not None else '-'}")
    if job.error:
        say(f"{'error':>16}: {job.error.message}", "red")


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
        if final.status != "succeeded":
            raise typer.Exit(1)
        return
    page = api.fine_tuning.jobs.list_events(job_id, limit=limit, order="asc")
    if as_json:
        print_json(page)
        return
    if not page.data:
        dim("no events yet")
    for event in page.data:
        console.print(event_line(event), soft_wrap=True)


@app.command("follow")
def follow(job_id: str) -> None:
    """Follow a job live: a progress bar with step, loss, tokens/s and ETA; events printed above it."""
    dim("Ctrl-C stops following, not the job.")
    final = follow_job(client(), job_id)
    if final.status != "succeeded":
        raise typer.Exit(1)


@app.command("metrics")
def metrics(job_id: str, as_json: bool = JSON_OPT) -> None:
    """Print a job's per-step metrics: train loss, validation loss, learning rate, tokens/s."""
    page = client().fine_tuning.jobs.metrics(job_id)
    if as_json:
        print_json(page)
        return
    rows = [(m.step, fmt_float(m.train_loss), fmt_float(m.valid_loss),
             f"{m.learning_rate:.2e}" if m.learning_rate is not None else "-",
             fmt_float(m.tokens_per_second), fmt_float(m.elapsed_seconds))
            for m in page.data]
    print_table(None, ["step", "train loss", "valid loss", "lr", "tok/s", "elapsed s"], rows, "no metrics yet")


@app.command("resume")
def resume(job_id: str, follow: bool = typer.Option(False, "--follow", "-f", help="Follow it afterwards.")) -> None:
    """Restart a failed or cancelled job from its last checkpoint (optimizer and data order included)."""
    api = client()
    job = api.fine_tuning.jobs.resume(job_id)
    say(f"resumed {job_id}: status {job.status}")
    if follow:
        final = follow_job(api, job_id)
        if final.status != "succeeded":
            raise typer.Exit(1)


@app.command("cancel")
def cancel(job_id: str) -> None:
    """Cancel a job that has not ended (validating files, queued, running); its checkpoints stay deployable."""
    job = client().fine_tuning.jobs.cancel(job_id)
    say(f"cancel requested for {job_id}: status {job.status}")


def checkpoints(job_id: str = typer.Argument(..., help="A job id (ftjob-…)."), as_json: bool = JSON_OPT) -> None:
    """List a job's deployable checkpoints."""
    page = client().fine_tuning.jobs.checkpoints.list(job_id, limit=100)
    if as_json:
        print_json(page)
        return
    rows = [(c.fine_tuned_model_checkpoint, c.step_number, fmt_float(c.metrics.train_loss), fmt_time(c.created_at))
            for c in page.data]
    print_table(None, ["checkpoint", "step", "train loss", "created"], rows, f"no checkpoints saved yet for {job_id}")
    if rows:
        dim(f"deploy one: tenfold deploy {rows[0][0]}")


def evaluate(
    models: list[str] = typer.Argument(..., help="Adapters to score: <job id> or <job id>/step-N (several)."),
    file: Path = typer.Option(..., "--file", help="JSONL: messages / prompt+completion (loss and exact match) "
                                                   "or prompt + expected (exact match)."),
    base: bool = typer.Option(True, "--base/--no-base", help="Also score the base model, first column."),
    max_examples: int = typer.Option(100, "--max-examples"),
    max_new_tokens: int = typer.Option(32, "--max-new-tokens", help="Greedy tokens generated per example."),
    as_json: bool = JSON_OPT,
) -> None:
    """Loss and exact-match accuracy of the base model and adapters/checkpoints, side by side."""
    import json

    if not file.is_file():
        raise CliError(f"no such file: {file}")
    rows = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as exc:
                raise CliError(f"{file} line {number}: invalid JSON ({exc})") from None
    api = client()
    names = list(models)
    if base:
        base_name = _base_model(api)
        names = [base_name] + [m for m in names if m != base_name]
    result = api.fine_tuning.evaluations.create(models=names, examples=rows, max_examples=max_examples,
                                                max_new_tokens=max_new_tokens)
    if as_json:
        print_json(result)
        return
    table = [(r.model, fmt_float(r.loss),
              f"{r.exact_match:.1%} ({r.n_exact}/{r.n_with_expected})" if r.exact_match is not None else "-",
              r.n_examples) for r in result.data]
    print_table(None, ["model", "loss", "exact match", "examples"], table, "nothing scored")


def _base_model(api: Tenfold) -> str:
    for m in api.models.list().data:
        if not m.parent:
            return m.id
    raise CliError("the server lists no base model")
