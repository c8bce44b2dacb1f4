"""``tenfold files upload|list|get|delete``.

Owns: the files commands and the one-line summary of a file's contents (examples, tokens and the
tokenizer that counted them) that ``tenfold train`` prints too. Does not own: JSONL validation or token
counting (the server does both; a bad file is a 400 naming the line).
"""

from __future__ import annotations

from pathlib import Path

import typer

from tenfold.cli.output import CliError, client, fmt_time, print_json, print_table, say
from tenfold.types.files import FileObject

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
    uploaded = client().files.create(file=path, purpose=purpose)
    if as_json:
        print_json(uploaded)
        return
    say(f"uploaded {uploaded.filename} as {uploaded.id} ({uploaded.bytes} bytes; {contents(uploaded)})")


def contents(f: FileObject) -> str:
    """``12 examples, 480 tokens (smollm2-135m-instruct tokenizer), longest 45`` for a fine-tune file."""
    if f.purpose == "batch":
        return f"{f.n_examples} requests"
    if f.n_tokens is None:
        return f"{f.n_examples} examples"
    return f"{f.n_examples} examples, {f.n_tokens} tokens ({f.tokenizer} tokenizer), longest {f.max_example_tokens}"


@app.command("list")
def list_files(limit: int = typer.Option(20, "--limit", help="At most this many (max 100)."),
               as_json: bool = JSON_OPT) -> None:
    """List your files, newest first."""
    page = client().files.list(limit=limit)
    if as_json:
        print_json(page)
        return
    rows = [(f.id, f.filename, f.purpose, f.n_examples, "-" if f.n_tokens is None else f.n_tokens, f.bytes,
             fmt_time(f.created_at)) for f in page.data]
    print_table(None, ["id", "filename", "purpose", "examples", "tokens", "bytes", "created"], rows,
                "no files yet: tenfold files upload PATH")


@app.command("get")
def get(file_id: str, as_json: bool = JSON_OPT) -> None:
    """Show one file."""
    info = client().files.retrieve(file_id)
    if as_json:
        print_json(info)
        return
    for key in ("id", "filename", "purpose", "bytes", "status"):
        say(f"{key:>9}: {getattr(info, key)}")
    say(f"{'contents':>9}: {contents(info)}")
    say(f"{'created':>9}: {fmt_time(info.created_at)}")


@app.command("delete")
def delete(file_id: str) -> None:
    """Delete a file."""
    client().files.delete(file_id)
    say(f"deleted {file_id}")
