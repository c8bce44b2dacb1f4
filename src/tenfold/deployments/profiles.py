"""Hardware profiles: what a deployment's replicas run on, by name.

Owns: the profiles this machine offers (``cpu`` always; ``gpu.<kind>`` per CUDA device kind present, e.g.
``gpu.h100``), the default (a GPU where there is one, else ``cpu``), the engine device a profile means,
and the 400 for an unknown or unavailable profile that lists the available ones. Prices per profile live in
the price table (``Settings.hardware_prices``). Does not own: starting replicas.
"""

from __future__ import annotations

import re
from functools import lru_cache

from tenfold.errors import InvalidRequest


def _kind(device_name: str) -> str:
    """``NVIDIA H100 80GB HBM3`` → ``h100``; ``NVIDIA GeForce RTX 4090`` → ``rtx4090``."""
    m = re.search(r"\b(RTX\s?\d{4}|[A-Z]{1,2}\d{2,4}[A-Z]?)\b", device_name.upper())
    return (m.group(1) if m else device_name).replace(" ", "").lower()


@lru_cache(maxsize=1)
def available_profiles() -> tuple[str, ...]:
    gpus: list[str] = []
    try:
        import torch

        if torch.cuda.is_available():
            gpus = sorted({f"gpu.{_kind(torch.cuda.get_device_name(i))}" for i in range(torch.cuda.device_count())})
    except Exception:  # noqa: BLE001 - no usable CUDA: CPU only
        gpus = []
    return (*gpus, "cpu")


def default_profile() -> str:
    return available_profiles()[0]


def check_profile(profile: str) -> str:
    profiles = available_profiles()
    if profile not in profiles:
        raise InvalidRequest(f"Hardware profile '{profile}' is not available on this server. Available: "
                             f"{', '.join(profiles)}.", param="hardware_profile", code="unknown_hardware_profile")
    return profile


def engine_device(profile: str) -> str:
    """The ``TENFOLD_ENGINE_DEVICE`` of a replica on ``profile``."""
    return "cuda" if profile.startswith("gpu.") else "cpu"
