"""``tenfold download`` and ``tenfold jobs delete``: a job's weights out of the server.

Owns: the commands and their progress display (bytes and rate while an archive streams). Does not own:
archives (the server streams them; ``tenfold.sdk``).
"""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from tenfold.cli.output import client, console, say


def download(
    job_id: str = typer.Argument(..., help="A job id (ftjob-…)."),
    checkpoint_step: int | None = typer.Option(None, "--checkpoint-step", "-s",
                                               help="A saved step (default: the final adapter, else the newest)."),
    checkpoint_type: str = typer.Option("default", "--checkpoint-type",
                                        help="adapter (the PEFT folder; default) or merged (a full model)."),
    output_dir: Path = typer.Option(Path("."), "--output-dir", "-o", help="Where the .tar.zst goes."),
) -> None:
    """Download a job's weights as a .tar.zst (extract with `tar --zstd -xf FILE`)."""
    started = time.monotonic()
    with Progress(TextColumn("downloading"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=console,
                  transient=True) as bar:
        task = bar.add_task("download", total=None)
        path = client(timeout=3600.0).fine_tuning.jobs.download(
            job_id, output=output_dir, checkpoint_step=checkpoint_step, checkpoint_type=checkpoint_type,
            on_progress=lambda done: bar.update(task, completed=done))
    size = path.stat().st_size
    say(f"saved {path} ({size / 1e6:.1f} MB in {time.monotonic() - started:.1f} s)", "bold green")
    say(f"extract it with: tar --zstd -xf {path}")


def delete_job(job_id: str = typer.Argument(..., help="A job id (ftjob-…).")) -> None:
    """Delete an ended job that serves nowhere: its checkpoints and files go, its usage rows stay."""
    client().fine_tuning.jobs.delete(job_id)
    say(f"deleted {job_id}", "bold")
