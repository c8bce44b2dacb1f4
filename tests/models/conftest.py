"""Fixtures for base-model tests: a session model cache (shared with tests/engine) holding the tiny model."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
if str(SRC) not in sys.path:  # the package may not be installed in the venv yet
    sys.path.insert(0, str(SRC))

import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Same folder as tests/engine's fixture, so the tiny model is built once per session.
    return tmp_path_factory.getbasetemp() / "tenfold-models"
