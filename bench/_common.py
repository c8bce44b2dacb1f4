"""Shared helpers for the benchmarks: finding the base model folder, printing tables."""

from __future__ import annotations

import os
from pathlib import Path

BASE_MODEL = "smollm2-135m-instruct"


def default_models_dir() -> Path:
    """``$TENFOLD_MODEL_CACHE``, else ``~/.tenfold/models`` (the first use converts the GGUF, ~25 s)."""
    override = os.environ.get("TENFOLD_MODEL_CACHE")
    return Path(override) if override else Path("~/.tenfold/models").expanduser()


def resolve_model(models_dir: Path) -> Path:
    from tenfold.models.registry import resolve_base_model

    return resolve_base_model(BASE_MODEL, models_dir=Path(models_dir).expanduser())


def table(headers: list[str], rows: list[list[object]]) -> str:
    """A GitHub-markdown table (also readable in a terminal)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    return str(value)
