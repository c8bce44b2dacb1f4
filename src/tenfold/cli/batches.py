"""``tenfold batches create|get|list|cancel|results``: the Batch API over the SDK.

Owns: the batch commands. Does not own: file validation (the server answers 400 naming the line).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from tenfold.cli.output import (
    CliError,
    client,
    fmt_time,
    print_json,
    print_table,
    say,
    wire,
)
from tenfold.types.batches import Batch

app = typer.Typer(help="Batch API: run a JSONL file of requests at lower priority and half price.",
                  no_args_is_help=True)
JSON_OPT = typer.Option(False, "--json", help="Print the raw JSON answer.")


def _show(b: Batch) -> None:
    c = b.request_counts
    say(f"{b.id}  {b.status}  {c.completed}/{c.total} done, {c.failed} failed")
    for key in ("output_file_id", "error_file_id"):
        if getattr(b, key):
            say(f"  {key}: {getattr(b, key)}")


@app.command("create")
def create(
    source: str = typer.Argument(..., help="A JSONL file to upload (purpose batch) or an uploaded file id."),
    endpoint: str = typer.Option("/v1/chat/completions", "--endpoint", help="/v1/chat/completions or /v1/completions."),
    wait: bool = typer.Option(False, "--wait", help="Wait until the batch finishes."),
    as_json: bool = JSON_OPT,
) -> None:
    """Create a batch from a file of requests."""
    api = client()
    if source.startswith("file-"):
        file_id = source
    else:
        path = Path(source)
        if not path.is_file():
            raise CliError(f"no such file: {path}")
        file_id = api.files.create(file=path, purpose="batch").id
    b = api.batches.create(input_file_id=file_id, endpoint=endpoint)
    if wait:
        b = api.batches.wait(b.id)
    print_json(b) if as_json else _show(b)


@app.command("get")
def get(batch_id: str, as_json: bool = JSON_OPT) -> None:
    """Show one batch."""
    b = client().batches.retrieve(batch_id)
    print_json(b) if as_json else _show(b)


@app.command("list")
def list_batches(limit: int = typer.Option(20, "--limit"), as_json: bool = JSON_OPT) -> None:
    """List your batches, newest first."""
    page = client().batches.list(limit=limit)
    if as_json:
        print_json(page)
        return
    rows = [(b.id, b.status, b.endpoint, b.request_counts.total, fmt_time(b.created_at)) for b in page.data]
    print_table(None, ["id", "status", "endpoint", "requests", "created"], rows, "no batches yet")


@app.command("cancel")
def cancel(batch_id: str, as_json: bool = JSON_OPT) -> None:
    """Cancel a batch; finished lines are kept in its output file."""
    b = client().batches.cancel(batch_id)
    print_json(b) if as_json else _show(b)


@app.command("results")
def results(batch_id: str, output: Path = typer.Option(Path("results.jsonl"), "--output", help="Where to write.")
            ) -> None:
    """Write the output and error lines of a finished batch (join them on custom_id)."""
    lines = client().batches.results(batch_id)
    output.write_text("".join(json.dumps(wire(x)) + "\n" for x in lines))
    say(f"wrote {len(lines)} result lines to {output}")
