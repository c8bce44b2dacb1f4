"""Base-model registry: known names, local folders, HF ids, the tiny model, the Llama-family check,
and crash/concurrency safety of cache builds."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tenfold.models import (
    KNOWN_BASE_MODELS,
    is_same_base,
    llama_family,
    load_causal_lm,
    load_tokenizer,
    resolve_base_model,
)
from tenfold.models.cache import build_once
from tenfold.models.registry import UnsupportedModelError
from tenfold.models.tiny import build_tiny_model


def test_tiny_model_is_complete_and_deterministic(models_dir, tmp_path):
    path = resolve_base_model("tiny-random-llama", models_dir=models_dir)
    assert path == models_dir / "tiny-random-llama"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (path / name).is_file(), name
    tokenizer = load_tokenizer(path)
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template
    assert len(tokenizer) == 49152
    model = load_causal_lm(path)
    assert model.config.num_hidden_layers == 2 and model.dtype == torch.float32
    rebuilt = tmp_path / "again"
    rebuilt.mkdir()
    build_tiny_model(rebuilt, tokenizer_dir=path, seed=0)
    a, b = load_file(str(path / "model.safetensors")), load_file(str(rebuilt / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    started = time.perf_counter()
    assert resolve_base_model("tiny-random-llama", models_dir=models_dir) == path  # cached: no rebuild
    assert time.perf_counter() - started < 0.5


def test_local_folder_and_errors(models_dir, tmp_path):
    tiny = resolve_base_model("tiny-random-llama", models_dir=models_dir)
    assert resolve_base_model(str(tiny), models_dir=models_dir) == tiny
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        resolve_base_model(str(tmp_path / "empty"), models_dir=models_dir)
    with pytest.raises(ValueError, match="not an existing folder"):
        resolve_base_model(str(tmp_path / "missing"), models_dir=models_dir)
    with pytest.raises(ValueError) as info:
        resolve_base_model("no-such-model", models_dir=models_dir)
    assert all(name in str(info.value) for name in KNOWN_BASE_MODELS)


def test_hf_id_download_failure_is_clear(tmp_path, monkeypatch):
    import huggingface_hub

    def offline(**kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(ValueError, match="could not download base model 'someone/some-model'"):
        resolve_base_model("someone/some-model", models_dir=tmp_path)


def test_llama_family_check():
    assert llama_family({"model_type": "qwen2"}) == "qwen2"
    with pytest.raises(UnsupportedModelError, match="Llama-family"):
        llama_family({"model_type": "gpt2"})


def test_is_same_base_is_lenient_but_not_blind(tmp_path):
    folder = tmp_path / "smollm2-135m-instruct"
    ok = ["smollm2-135m-instruct", str(folder), "HuggingFaceTB/SmolLM2-135M-Instruct", "/x/smollm2-135m-instruct/"]
    for declared in ok:
        assert is_same_base(declared, base_name="smollm2-135m-instruct", model_path=folder), declared
    for declared in ["meta-llama/Llama-3.1-8B", "Qwen/Qwen2.5-0.5B-Instruct"]:
        assert not is_same_base(declared, base_name="smollm2-135m-instruct", model_path=folder), declared


def test_build_once_is_atomic_and_serialised(tmp_path):
    target = tmp_path / "thing"

    def crash(tmp: Path) -> None:
        (tmp / "config.json").write_text("{}")
        raise RuntimeError("killed mid-build")

    with pytest.raises(RuntimeError):
        build_once(target, crash)
    assert not target.exists() and [p.name for p in tmp_path.iterdir()] == [".thing.lock"]

    calls: list[int] = []

    def slow(tmp: Path) -> None:
        calls.append(1)
        time.sleep(0.2)
        (tmp / "config.json").write_text(json.dumps({"ok": True}))

    threads = [threading.Thread(target=build_once, args=(target, slow)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert json.loads((target / "config.json").read_text()) == {"ok": True}
