"""CLI test helpers: a ``cli`` fixture that runs ``tenfold`` in-process with a clean environment.

Every run gets ``TENFOLD_CONFIG_DIR`` under the test's tmp folder (never the real ``~/.config``), a wide
terminal so tables do not wrap, and only the TENFOLD_* variables the test passes.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tenfold.cli.main import app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def config_dir(tmp_path) -> Path:
    return tmp_path / "config"


@pytest.fixture
def cli(monkeypatch, config_dir) -> Callable[..., object]:
    for name in list(os.environ):
        if name.startswith("TENFOLD_") and name not in ("TENFOLD_MODEL_CACHE",):
            monkeypatch.delenv(name)
    runner = CliRunner()

    def run(*args: str, **env: str):
        full_env = {"TENFOLD_CONFIG_DIR": str(config_dir), "COLUMNS": "200", **env}
        return runner.invoke(app, list(args), env=full_env)

    return run


@pytest.fixture
def as_admin(server) -> dict[str, str]:
    """Environment for talking to the shared test server with its admin key."""
    return {"TENFOLD_BASE_URL": server.base_url, "TENFOLD_API_KEY": server.api_key}
