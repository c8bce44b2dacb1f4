"""The real embedded model: GGUF conversion, fast reload, and a correct answer (slow)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch

from tenfold.models import load_causal_lm, load_tokenizer, resolve_base_model


@pytest.mark.slow
def test_embedded_model_converts_and_answers(tmp_path_factory):
    cache = os.environ.get("TENFOLD_MODEL_CACHE")
    models_dir = Path(cache) if cache else tmp_path_factory.mktemp("embedded-models")
    path = resolve_base_model("smollm2-135m-instruct", models_dir=models_dir)
    assert (path / "model.safetensors").is_file() and (path / "config.json").is_file()
    started = time.perf_counter()
    tokenizer, model = load_tokenizer(path), load_causal_lm(path)
    assert time.perf_counter() - started < 5  # the converted folder loads fast (about 0.3 s uncontended)
    assert "quantization_config" not in model.config.to_dict()
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], tokenize=False, add_generation_prompt=True
    )
    input_ids = torch.tensor([tokenizer.encode(prompt, add_special_tokens=False)])
    with torch.inference_mode():
        out = model.generate(
            input_ids=input_ids, attention_mask=torch.ones_like(input_ids), do_sample=False, max_new_tokens=16
        )
    assert "Paris" in tokenizer.decode(out[0, input_ids.shape[1] :], skip_special_tokens=True)
