"""The bundled demo task: files are valid, deterministic and held out; the format check is strict but fair."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tenfold.training.data import validate_jsonl
from tenfold.training.demo_task import DEMO_HYPERPARAMETERS, demo_train_path, load_demo_eval, score_format
from tenfold.training.spec import TrainingSpec


def test_bundled_files_are_valid_and_held_out() -> None:
    data = demo_train_path().read_bytes()
    summary = validate_jsonl(data)
    assert summary.format == "messages" and 80 <= summary.n_examples <= 160
    rows = [json.loads(line) for line in data.decode().splitlines()]
    train_prompts = {r["messages"][0]["content"] for r in rows}
    assert all(score_format(r["messages"][-1]["content"]) for r in rows)
    evals = load_demo_eval()
    assert len(evals) == 10
    assert all(e["prompt"] not in train_prompts and e["reference"] for e in evals)
    assert all(e["messages"] == [{"role": "user", "content": e["prompt"]}] for e in evals)


def test_generator_is_deterministic(tmp_path: Path) -> None:
    path = demo_train_path().parent / "make_demo_data.py"
    spec = importlib.util.spec_from_file_location("make_demo_data", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tmp_path)
    for name in ("demo_train.jsonl", "demo_eval.jsonl"):
        assert (tmp_path / name).read_bytes() == (demo_train_path().parent / name).read_bytes()


def test_hyperparameters_fit_the_training_spec(tmp_path: Path) -> None:
    spec = TrainingSpec(base_model="smollm2-135m-instruct", training_file=str(demo_train_path()),
                        output_dir=str(tmp_path), **DEMO_HYPERPARAMETERS)
    assert spec.n_epochs * -(-validate_jsonl(demo_train_path().read_bytes()).n_examples // spec.batch_size) <= 40


@pytest.mark.parametrize("text", ['{"answer": "Paris"}', '  {"answer": "Paris"}\n', '{"answer":"a b c"}',
                                  '{"answer": 42}', '{"answer": "Le caf\\u00e9"}'])
def test_format_accepted(text: str) -> None:
    assert score_format(text)


@pytest.mark.parametrize("text", ["The capital of France is Paris.", "", '{"answer": ""}', '{"answer": null}',
                                  '{"answer": true}', '{"answer": "Paris", "confidence": 1}', '{"result": "Paris"}',
                                  '```json\n{"answer": "Paris"}\n```', '{"answer": "Paris"}\nHope this helps!',
                                  '{"answer": "Paris"', '["Paris"]', 'Answer: {"answer": "Paris"}'])
def test_format_rejected(text: str) -> None:
    assert not score_format(text)
