"""``tenfold files upload|list|get|delete``.

Owns: the files commands. Does not own: JSONL validation (the server answers 400 naming the line).
"""

from __future__ import annotations

from pathlib import Path

import typer

from tenfold.cli.output import CliError, client, fmt_time, print_json, print_table, say

app = typer.Typer(help="Upload and list training files.", no_args_is_help=True)

JSON_OPT = typer.Option(False, "--json", help="Print the raw JSON answer.")


@app.command("upload")
def upload(
    path: Path = typer.Argument(..., help="A JSONL file (chat `messages` or `prompt`/`completion` rows)."),
    purpose: str = typer.Option("fine-tune", "--purpose", help="fine-tune (or batch)."),
    as_json: bool = JSON_OPT,
) -> None:
    """Upload a JSONL file; prints its file id."""
    if not path.is_file():
        raise CliError(f"no such file: {path}")
    uploaded = client().files.upload(path, purpose=purpose)
    if as_json:
        print_json(uploaded)
        return
    say(f"uploaded {uploaded.get('filename', path.name)} as {uploaded['id']} ({uploaded.get('bytes', '?')} bytes)")


@app.command("list")
def list_files(limit: int = typer.Option(20, "--limit", help="At most this many (max 100)."),
               as_json: bool = JSON_OPT) -> None:
    """List your files, newest first."""
    page = client().files.list(limit=limit)
    if as_json:
        print_json(page)
        return
    rows = [(f["id"], f.get("filename"), f.get("purpose"), f.get("bytes"), fmt_time(f.get("created_at")))
            for f in page.get("data", [])]
    print_table(None, ["id", "filename", "purpose", "bytes", "created"], rows, "no files yet: tenfold files upload PATH")


@app.command("get")
def get(file_id: str, as_json: bool = JSON_OPT) -> None:
    """Show one file."""
    info = client().files.get(file_id)
    if as_json:
        print_json(info)
        return
    for key in ("id", "filename", "purpose", "bytes", "status"):
        say(f"{key:>9}: {info.get(key)}")
    say(f"{'created':>9}: {fmt_time(info.get('created_at'))}")


@app.command("delete")
def delete(file_id: str) -> None:
    """Delete a file."""
    client().files.delete(file_id)
    say(f"deleted {file_id}")
