"""The tiny randomly initialised Llama model that tests run on.

Owns: building ``tiny-random-llama`` (2 layers, hidden 64, the embedded SmolLM2 tokenizer and chat
template) deterministically from a seed into the model cache. Does not own: the real embedded model
(``gguf``) or name resolution (``registry``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tenfold.models.cache import build_once
from tenfold.models.gguf import ensure_embedded_tokenizer

TINY_NAME = "tiny-random-llama"
TINY_SEED = 0
TINY_VOCAB = 49152  # the embedded tokenizer's vocabulary


def tiny_config() -> "object":
    """The ``LlamaConfig`` of the tiny model (token ids match the embedded tokenizer)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=TINY_VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        # Wider than the usual 0.02 so greedy outputs vary instead of repeating one token.
        initializer_range=0.2,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        rms_norm_eps=1e-5,
    )


def build_tiny_model(out_dir: Path, *, tokenizer_dir: Path, seed: int = TINY_SEED) -> None:
    """Write the tiny model (float32 safetensors) and a copy of the tokenizer into ``out_dir``."""
    import torch
    from transformers import GenerationConfig, LlamaForCausalLM

    config = tiny_config()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config).to(torch.float32)
    model.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=2)
    model.save_pretrained(str(out_dir))
    for item in tokenizer_dir.iterdir():
        if item.is_file():
            shutil.copy2(item, out_dir / item.name)


def ensure_tiny_model(models_dir: Path, *, seed: int = TINY_SEED) -> Path:
    """The tiny model folder under ``models_dir``, built on first use (same seed → same weights)."""
    name = TINY_NAME if seed == TINY_SEED else f"{TINY_NAME}-seed{seed}"
    tokenizer_dir = ensure_embedded_tokenizer(models_dir)
    return build_once(
        models_dir / name,
        lambda tmp: build_tiny_model(tmp, tokenizer_dir=tokenizer_dir, seed=seed),
        marker="model.safetensors",
    )
