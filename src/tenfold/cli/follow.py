"""Following a training job in the terminal: a Rich progress bar fed by job events.

Owns: the bar (step/total, loss, tokens/s, ETA) driven by ``metrics`` events, printing ``message`` events
above it, the Ctrl-C behaviour (stop following, never the job), and the closing summary with the next
command. Used by ``tenfold train``, ``tenfold demo`` and ``tenfold jobs events --follow``.
Does not own: polling (``Tenfold.fine_tuning.jobs.wait``).
"""

from __future__ import annotations

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
)
from rich.text import Text

from tenfold.cli.output import (
    console,
    dim,
    fmt_duration,
    fmt_float,
    fmt_rate,
    fmt_time,
    say,
)
from tenfold.sdk import Tenfold
from tenfold.types.jobs import FineTuningJob, JobEvent

_LEVEL_STYLE = {"error": "red", "warning": "yellow", "warn": "yellow"}


def event_line(event: JobEvent) -> Text:
    """One printable line for an event (metrics events summarised)."""
    when = fmt_time(event.created_at)
    data = event.data or {}
    if event.type == "metrics" and data:
        body = (
            f"step {data.get('step', '?')}/{data.get('total_steps', '?')}  loss {fmt_float(data.get('loss'))}"
            f"  {fmt_rate(data.get('tokens_per_second'))} tok/s  eta {fmt_duration(data.get('eta_seconds'))}"
        )
        return Text.assemble((when + "  ", "dim"), (body, "dim"))
    style = _LEVEL_STYLE.get(event.level.lower(), "")
    return Text.assemble((when + "  ", "dim"), (event.message, style))


def _worth_a_line(data: dict) -> bool:
    """About ten progress lines per job when there is no live bar."""
    step, total = int(data.get("step") or 0), int(data.get("total_steps") or 0)
    return step <= 1 or not total or step == total or step % max(1, total // 10) == 0


def _bar() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("{task.fields[tps]} tok/s"),
        TextColumn("ETA {task.fields[eta]}"),
        console=console,
    )


def follow_job(
    client: Tenfold, job_id: str, *, poll: float = 1.0, bar: bool = True, detach_on_interrupt: bool = True
) -> FineTuningJob:
    """Follow ``job_id`` to its end and print the summary; returns the final job.

    Ctrl-C stops following (exit 130) and says the job keeps running; with ``detach_on_interrupt=False``
    the KeyboardInterrupt propagates instead (the demo stops its server then).
    """
    # Without a terminal (CI, `make demo > log`) a live bar renders nothing, so print progress lines instead.
    progress = _bar() if bar and console.is_terminal else None
    task = progress.add_task("queued", total=None, loss="-", tps="-", eta="-:--") if progress else None

    def on_event(event: JobEvent) -> None:
        data = event.data or {}
        if progress is not None and task is not None and event.type == "metrics" and data:
            total = data.get("total_steps")
            progress.update(
                task,
                total=int(total) if total else None,
                completed=int(data.get("step") or 0),
                loss=fmt_float(data.get("loss")),
                tps=fmt_rate(data.get("tokens_per_second")),
                eta=fmt_duration(data.get("eta_seconds")),
            )
            return
        if progress is None and event.type == "metrics" and data and not _worth_a_line(data):
            return
        (progress.console if progress else console).print(event_line(event), soft_wrap=True)

    def on_job(job: FineTuningJob) -> None:
        if progress is None or task is None:
            return
        progress.update(task, description=job.status)
        prog = job.progress
        current = progress.tasks[0]
        if prog.total_steps and prog.step > current.completed:
            progress.update(task, total=prog.total_steps, completed=prog.step)

    try:
        if progress is not None:
            progress.start()
        job = client.fine_tuning.jobs.wait(job_id, on_event=on_event, on_job=on_job, poll=poll)
        if progress is not None and task is not None and job.status == "succeeded":
            current = progress.tasks[0]
            if current.total:
                progress.update(task, completed=current.total, eta="0:00")
    except KeyboardInterrupt:
        if progress is not None:
            progress.stop()
        if not detach_on_interrupt:
            raise
        say(f"stopped following {job_id}; the job keeps running on the server.", "yellow")
        dim(f"watch it again: tenfold jobs events {job_id} --follow    stop it: tenfold jobs cancel {job_id}")
        raise typer.Exit(130) from None
    finally:
        if progress is not None:
            progress.stop()
    print_summary(job)
    return job


def print_summary(job: FineTuningJob) -> None:
    """Status line plus what to do next."""
    job_id, status, checkpoints = job.id, job.status, job.checkpoints
    if status == "succeeded":
        tokens = job.trained_tokens
        extra = f", {tokens} tokens trained" if tokens else ""
        say(f"job {job_id} succeeded{extra}; {len(checkpoints)} checkpoint(s) saved.", "bold green")
        say(f"next: tenfold deploy {job_id}")
        return
    reason = f": {job.error.message}" if job.error and job.error.message else ""
    say(f"job {job_id} {status}{reason}", "bold red" if status == "failed" else "yellow")
    if checkpoints:
        say(f"saved checkpoints are deployable: tenfold deploy {latest_checkpoint(checkpoints)}")


def latest_checkpoint(checkpoints: list[str]) -> str:
    """The ``<job>/step-N`` with the highest N."""

    def step(name: str) -> int:
        tail = name.rsplit("step-", 1)[-1]
        return int(tail) if tail.isdigit() else -1

    return max(checkpoints, key=step)
