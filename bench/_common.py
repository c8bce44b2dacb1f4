"""Shared helpers for the benchmarks: finding the base model folder, starting a server, printing tables."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

BASE_MODEL = "smollm2-135m-instruct"


def default_models_dir() -> Path:
    """``$TENFOLD_MODEL_CACHE``, else ``~/.tenfold/models`` (the first use converts the GGUF, ~25 s)."""
    override = os.environ.get("TENFOLD_MODEL_CACHE")
    return Path(override) if override else Path("~/.tenfold/models").expanduser()


def resolve_model(models_dir: Path) -> Path:
    from tenfold.models.registry import resolve_base_model

    return resolve_base_model(BASE_MODEL, models_dir=Path(models_dir).expanduser())


def start_server(home: Path, models: Path, threads: int, port: int, *, role: str = "all",
                 env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.Popen:
    """A real ``tenfold serve`` on the embedded model at ``port`` (logging to ``home/server.log``), once healthy."""
    import httpx

    full = {**os.environ, "TENFOLD_HOME": str(home), "TENFOLD_BASE_MODEL": BASE_MODEL, "TENFOLD_MODEL_CACHE": str(models),
            "TENFOLD_TORCH_THREADS": str(threads), **(env or {})}
    full.pop("TENFOLD_DATABASE_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "tenfold.cli.main", "serve", "--port", str(port), "--role", role],
                            env=full, stdout=open(home / "server.log", "wb"), stderr=subprocess.STDOUT)
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json().get("status") == "ok":
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit((home / "server.log").read_text())


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
