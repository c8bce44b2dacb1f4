"""``tenfold export``: copy a job's adapter into a Hugging Face Hub repository, from this machine.

Owns: the command's options (``--adapter-id``, ``--repository``, ``--api-key`` defaulting to ``HF_TOKEN``,
``--public``, ``--base-model``), the "no token" message, and the progress display (downloaded bytes, then
the upload). Does not own: the export (``tenfold.sdk.hub.export_to_hub``) or the Hub protocol.
"""

from __future__ import annotations

import os

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from tenfold.cli.output import CliError, client, console, dim, say
from tenfold.sdk.hub import export_to_hub


def export(
    adapter_id: str = typer.Option(..., "--adapter-id", help="<job id> (its final adapter) or <job id>/step-<N>."),
    repository: str = typer.Option(..., "--repository", help="The Hub repository, <owner>/<name>; created if "
                                                             "missing."),
    api_key: str | None = typer.Option(None, "--api-key", help="A Hugging Face write token (default: env "
                                                               "HF_TOKEN); used here only, never sent to the server."),
    public: bool = typer.Option(False, "--public", help="Create the repository public (default: private)."),
    base_model: str | None = typer.Option(None, "--base-model", help="The base model's Hub id to record, when "
                                                                     "the job's base model has none (a local folder)."),
) -> None:
    """Export an adapter to a Hugging Face Hub repository as a PEFT adapter with a model card."""
    token = api_key or os.environ.get("HF_TOKEN")
    if not token:
        raise CliError("no Hugging Face token: set HF_TOKEN or pass --api-key (a write token from "
                       "https://huggingface.co/settings/tokens)")
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("downloading", total=None)

        def on_progress(stage: str, done: int, total: int | None) -> None:
            if stage == "download":
                bar.update(task, completed=done)
            elif stage == "upload" and done == 0:
                bar.update(task, description=f"uploading to {repository}", completed=0, total=total)
            else:
                bar.update(task, completed=done, total=total)

        try:
            result = export_to_hub(client(timeout=3600.0), adapter_id, repository, token=token, private=not public,
                                   base_model=base_model, on_progress=on_progress)
        except ValueError as exc:  # a malformed --adapter-id, --repository or --base-model
            raise CliError(str(exc)) from None
    size = f"{result.bytes / 1e6:.1f} MB" if result.bytes >= 1_000_000 else f"{result.bytes / 1e3:.1f} kB"
    say(f"exported {adapter_id} to {result.url} ({'private' if result.private else 'public'}; "
        f"{', '.join(result.files)}; {size})", "bold green")
    if result.hub_base_model is None:
        dim(f"base model {result.base_model!r} has no Hugging Face Hub name, so the card and adapter_config.json name "
            "it as is; pass --base-model <owner/name> to record one")
    dim(f"load it with PeftModel.from_pretrained(base, {result.repository!r})")
