"""Fixtures for base-model tests: a session model cache (shared with tests/engine) holding the tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def models_dir(model_cache: Path) -> Path:
    """The session model cache of tests/conftest.py (the tiny model is built once per session)."""
    return model_cache
