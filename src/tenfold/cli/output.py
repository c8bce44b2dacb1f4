"""Shared CLI output: the consoles, one-line error rendering, raw JSON, tables and small formatters.

Owns: how things look (red ``error: …`` lines on stderr, ``--json`` output of response models, timestamps,
token counts) and the one place CLI commands get a client. Does not own: any command.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tenfold.sdk import Tenfold
from tenfold.types.completions import CompletionUsage

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


class CliError(Exception):
    """A user-facing failure: printed as one red ``error:`` line, exit code 1."""


def client(base_url: str | None = None, api_key: str | None = None, timeout: float = 60.0) -> Tenfold:
    try:
        return Tenfold(base_url=base_url, api_key=api_key, timeout=timeout)
    except ValueError as exc:  # unreadable credentials file
        raise CliError(str(exc)) from exc


def print_error(message: str) -> None:
    """One red line on stderr; never wrapped, never interpreted as markup."""
    text = " ".join(str(message).split())
    err_console.print(Text(f"error: {text}", style="bold red"), soft_wrap=True)


def wire(data: Any) -> Any:
    """A response model (or a list of them) as the JSON the server sent: the fields it set, extras kept."""
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json", exclude_unset=True)
    if isinstance(data, list):
        return [wire(x) for x in data]
    return data


def print_json(data: Any) -> None:
    """Raw JSON on stdout (no Rich, so it pipes cleanly into ``jq``)."""
    sys.stdout.write(json.dumps(wire(data), indent=2, default=str) + "\n")
    sys.stdout.flush()


def fmt_time(ts: Any, short: bool = False) -> str:
    """Unix seconds → local ``YYYY-MM-DD HH:MM:SS`` (``MM-DD HH:MM:SS`` when short); ``-`` when missing."""
    if ts in (None, ""):
        return "-"
    try:
        return time.strftime("%m-%d %H:%M:%S" if short else "%Y-%m-%d %H:%M:%S", time.localtime(float(ts)))
    except (TypeError, ValueError):
        return str(ts)


def fmt_duration(seconds: Any) -> str:
    if seconds in (None, ""):
        return "-:--"
    try:
        total = max(0, int(round(float(seconds))))
    except (TypeError, ValueError):
        return "-:--"
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def fmt_float(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    try:
        return f"{float(value):.{digits}g}"
    except (TypeError, ValueError):
        return str(value)


def fmt_rate(value: Any) -> str:
    """A throughput like tokens/s: whole numbers with thousands separators."""
    if value is None:
        return "-"
    try:
        return f"{float(value):,.0f}"
    except (TypeError, ValueError):
        return str(value)


def fmt_usd(micro: Any) -> str:
    try:
        return f"${int(micro or 0) / 1_000_000:.6f}"
    except (TypeError, ValueError):
        return "-"


def usage_counts(usage: CompletionUsage | None) -> tuple[int, int, int]:
    """``(prompt, cached, completion)`` tokens of an inference answer's usage (zeros when absent)."""
    if usage is None:
        return (0, 0, 0)
    return (usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens)


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    out = Table(title=title, title_justify="left", header_style="bold")
    for i, name in enumerate(columns):  # ids (first column) stay on one line so they can be copied
        out.add_column(name, overflow="fold", no_wrap=i == 0)
    for row in rows:
        out.add_row(*[Text("-" if cell is None else str(cell)) for cell in row])
    return out


def print_table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]], empty: str) -> None:
    rows = list(rows)
    if not rows:
        console.print(Text(empty, style="dim"))
        return
    console.print(table(title, columns, rows))


def dim(message: str) -> None:
    console.print(Text(message, style="dim"), soft_wrap=True)


def say(message: str, style: str | None = None) -> None:
    console.print(Text(message, style=style or ""), soft_wrap=True)
