"""Fixtures for engine tests: the tiny model in a session model cache and real PEFT adapters on disk."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
if str(SRC) not in sys.path:  # the package may not be installed in the venv yet
    sys.path.insert(0, str(SRC))

import torch  # noqa: E402

torch.set_num_threads(1)

from tenfold.engine.types import AdapterRef  # noqa: E402
from tenfold.models.registry import resolve_base_model  # noqa: E402

from ._helpers import TINY, make_adapter  # noqa: E402


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Same folder for tests/models and tests/engine, so the tiny model is built once per session.
    return tmp_path_factory.getbasetemp() / "tenfold-models"


@pytest.fixture(scope="session")
def tiny_path(models_dir: Path) -> Path:
    return resolve_base_model(TINY, models_dir=models_dir)


@pytest.fixture(scope="session")
def adapter_factory(tiny_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., AdapterRef]:
    root = tmp_path_factory.mktemp("adapters")
    made: dict[str, AdapterRef] = {}

    def factory(name: str, *, seed: int = 1, **kwargs) -> AdapterRef:
        if name not in made:
            made[name] = make_adapter(tiny_path, root / name, seed=seed, **kwargs)
        return made[name]

    return factory


@pytest.fixture(scope="session")
def adapter_a(adapter_factory) -> AdapterRef:
    return adapter_factory("a", seed=1)


@pytest.fixture(scope="session")
def adapter_b(adapter_factory) -> AdapterRef:
    return adapter_factory("b", seed=2)
