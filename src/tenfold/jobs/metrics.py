"""The per-step metric series of a fine-tuning job: which keys exist, how a recipe's ``metrics`` event
becomes a job event, and how the events become the series ``GET …/metrics`` returns.

Owns: ``METRIC_KEYS`` (listed once), ``event_data`` and ``series`` (one row per step, oldest first; a
resumed run's repeated steps keep their latest values). Does not own: computing metrics (the recipes) or
storing events (the worker through the store).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

METRIC_KEYS = ("step", "total_steps", "epoch", "train_loss", "valid_loss", "learning_rate", "tokens",
               "tokens_per_second", "elapsed_seconds", "token_accuracy", "reward_margin", "reward_accuracy",
               "valid_mean_token_accuracy", "valid_reward_margin", "valid_reward_accuracy")
# The recipe's event names for the keys it reports under another name (its ``loss`` is the training loss).
_FROM_RECIPE = {"train_loss": "loss", "elapsed_seconds": "elapsed_s"}


def event_data(ev: dict[str, Any]) -> dict[str, Any]:
    """A recipe ``metrics`` event → the data stored on the job's event (``loss`` and ``eta_seconds`` too, which
    the progress display reads)."""
    data = {key: ev.get(_FROM_RECIPE.get(key, key)) for key in METRIC_KEYS}
    data.update(step=ev["step"], loss=ev.get("loss"), eta_seconds=ev.get("eta_s"))
    return {k: v for k, v in data.items() if v is not None}


def series(events: Iterable[Any]) -> list[dict[str, Any]]:
    """The metric rows of a job's ``metrics`` events, one per step, oldest first."""
    by_step: dict[int, dict[str, Any]] = {}
    for event in events:
        data = event.data or {}
        if "step" in data:
            by_step[int(data["step"])] = {k: data[k] for k in METRIC_KEYS if data.get(k) is not None}
    return [by_step[k] for k in sorted(by_step)]
