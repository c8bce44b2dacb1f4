"""Base models: registry of names, GGUF conversion of the embedded default, the tiny test model."""

from tenfold.models.registry import (
    KNOWN_BASE_MODELS,
    UnsupportedModelError,
    is_same_base,
    llama_family,
    load_causal_lm,
    load_tokenizer,
    resolve_base_model,
)

__all__ = [
    "KNOWN_BASE_MODELS",
    "UnsupportedModelError",
    "is_same_base",
    "llama_family",
    "load_causal_lm",
    "load_tokenizer",
    "resolve_base_model",
]
