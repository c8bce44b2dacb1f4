"""CLI test helpers: a ``cli`` fixture that runs ``tenfold`` in-process with a clean environment.

Every run gets ``TENFOLD_CONFIG_DIR`` under the test's tmp folder (never the real ``~/.config``), a wide
terminal so tables do not wrap, and only the TENFOLD_* variables the test passes.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from tenfold.cli.main import app

# A tiny fine-tuning set for the CLI training tests: 8 chats that teach "ANSWER: <sum>".
TRAIN_ROWS = [
    {"messages": [{"role": "user", "content": f"What is {a} plus {b}?"},
                  {"role": "assistant", "content": f"ANSWER: {a + b}"}]}
    for a in range(1, 5) for b in range(1, 3)
]


@pytest.fixture
def train_file(tmp_path) -> Path:
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in TRAIN_ROWS))
    return path


@pytest.fixture
def base_model(server) -> str:
    return httpx.get(server.base_url.removesuffix("/v1") + "/health").json()["base_model"]


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
