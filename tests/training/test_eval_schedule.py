"""When a run evaluates its validation file: ``eval_every="auto"`` (about ten times per run), explicit values,
checkpoints and the last step; ``n_evals`` counts exactly the steps the recipe evaluates, and the ``done``
event reports the evaluated tokens that the bill adds to the trained ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tenfold.training.spec import TrainingSpec
from tests.training.conftest import write_jsonl


def _spec(**kw: Any) -> TrainingSpec:
    return TrainingSpec(base_model="m", training_file="/t.jsonl", output_dir="/o", **kw)


@pytest.mark.parametrize(("total", "every"), [(1, 1), (6, 1), (14, 1), (15, 2), (24, 2), (25, 3), (100, 10),
                                              (1000, 100)])
def test_auto_is_about_ten_per_run(total: int, every: int) -> None:
    spec = _spec(validation_file="/v.jsonl")
    assert spec.eval_every == "auto" and spec.resolved_eval_every(total) == every
    n = spec.n_evals(total)  # every step below 15 steps; ten (± rounding) from 100 steps on
    assert n == total if total < 15 else (5 <= n <= 15 and (total < 100 or 9 <= n <= 11))


@pytest.mark.parametrize("kw", [dict(eval_every="auto"), dict(eval_every=0), dict(eval_every=3),
                                dict(eval_every=4, checkpoint_every=6), dict(eval_every=0, n_checkpoints=3),
                                dict(eval_every="auto", checkpoint_every=7), dict(eval_every=50)])
def test_n_evals_counts_the_steps_that_evaluate(kw: dict[str, Any]) -> None:
    spec = _spec(validation_file="/v.jsonl", **kw)
    for total in range(1, 60):
        steps = [s for s in range(1, total + 1) if spec.evaluates_at(s, total)]
        assert spec.n_evals(total) == len(steps) and steps[-1] == total, (kw, total, steps)
    assert _spec(**{k: v for k, v in kw.items() if k != "eval_every"}).n_evals(20) == 0  # no validation file


def test_explicit_eval_every_needs_a_validation_file() -> None:
    with pytest.raises(ValueError, match="eval_every needs a validation_file"):
        _spec(eval_every=5)
    assert _spec(eval_every=0).resolved_eval_every(10) == 0 and _spec().resolved_eval_every(10) == 0


def test_default_run_logs_valid_loss_about_ten_times_and_counts_evaluated_tokens(make_spec, tmp_path: Path,
                                                                                 rows_factory) -> None:
    from tenfold.training.sft import run_sft

    valid = write_jsonl(tmp_path / "valid.jsonl", rows_factory(3))
    spec = make_spec(rows=rows_factory(40), validation_file=str(valid), n_epochs=1, batch_size=2,
                     checkpoint_every=0, logging_steps=5)
    events: list[dict[str, Any]] = []
    done = run_sft(spec, events.append)
    started = events[0]
    assert started["total_steps"] == 20 and started["eval_every"] == 2 and started["n_evals"] == 10
    metrics = [e for e in events if e["type"] == "metrics"]
    assert [m["step"] for m in metrics if "valid_loss" in m] == list(range(2, 21, 2))
    assert started["validation_tokens"] > 0
    assert done["n_evals"] == 10 and done["evaluated_tokens"] == 10 * started["validation_tokens"]
    assert done["valid_loss"] == metrics[-1]["valid_loss"]  # the last step's evaluation, not a second one


def test_resume_keeps_the_evaluation_count(make_spec, tmp_path: Path, rows_factory) -> None:
    from tenfold.training.sft import run_sft

    valid = write_jsonl(tmp_path / "valid.jsonl", rows_factory(3))
    common = dict(validation_file=str(valid), n_epochs=2, batch_size=4, checkpoint_every=3, eval_every=2)
    full: list[dict[str, Any]] = []
    run_sft(make_spec(output_dir=str(tmp_path / "a"), **common), full.append)
    resumed: list[dict[str, Any]] = []
    run_sft(make_spec(output_dir=str(tmp_path / "b"), resume_from=str(tmp_path / "a" / "step-3"), **common),
            resumed.append)
    # 8 steps: evaluations at 2, 3 (checkpoint), 4, 6 (both), 8 = 5, whether or not the run was resumed
    assert full[-1]["n_evals"] == resumed[-1]["n_evals"] == 5
    assert full[-1]["evaluated_tokens"] == resumed[-1]["evaluated_tokens"] == 5 * full[0]["validation_tokens"]
