"""Fixtures for engine tests: the tiny model in a session model cache and real PEFT adapters on disk."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch  # noqa: E402

torch.set_num_threads(1)

from tenfold.engine.types import AdapterRef  # noqa: E402
from tenfold.models.registry import resolve_base_model  # noqa: E402

from ._helpers import TINY, make_adapter  # noqa: E402


@pytest.fixture(scope="session")
def models_dir(model_cache: Path) -> Path:
    """The session model cache of tests/conftest.py (the tiny model is built once per session)."""
    return model_cache


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
