"""Shape facts of a Llama-family base model, read from its ``config.json``; no torch here.

Owns: which architectures the engine serves (``SUPPORTED``), how adapter target modules map onto the fused
groups (``LORA_GROUPS``), ``ModelShape`` (sizes, context, per-group widths, KV bytes per token) and reading
and checking a config (``read_config``, ``model_shape``). Does not own: weights or the forward (``model``)
or adapter stacks (``lora_stacks``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tenfold.engine.types import EngineError

SUPPORTED = {"LlamaForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM"}
# Adapter target module → (fused group, part index). Parts are concatenated in this order inside a group.
LORA_GROUPS = {
    "q_proj": ("qkv", 0), "k_proj": ("qkv", 1), "v_proj": ("qkv", 2),
    "o_proj": ("o", 0),
    "gate_proj": ("gate_up", 0), "up_proj": ("gate_up", 1),
    "down_proj": ("down", 0),
}


@dataclass(frozen=True)
class ModelShape:
    vocab_size: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    eps: float
    max_context: int
    tied: bool

    def group_out(self, group: str) -> list[int]:
        """Output width of each part of a fused LoRA group."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        return {"qkv": [q, kv, kv], "o": [self.hidden], "gate_up": [self.intermediate] * 2,
                "down": [self.hidden]}[group]

    def linear_shapes(self, rows: int, head_rows: int) -> list[tuple[int, int, int]]:
        """(rows, out, in) of each distinct base linear as a step of ``rows`` tokens runs it (the LM head
        over ``head_rows`` of them): what the engine's number format is measured on."""
        groups = [(rows, sum(self.group_out(g)), self.group_in(g)) for g in ("qkv", "o", "gate_up", "down")]
        return groups + [(head_rows, self.vocab_size, self.hidden)]

    def group_in(self, group: str) -> int:
        return {"qkv": self.hidden, "o": self.heads * self.head_dim, "gate_up": self.hidden,
                "down": self.intermediate}[group]

    def kv_bytes_per_token(self, dtype: Any) -> int:
        """KV bytes of one token over all layers at ``dtype`` (a ``torch.dtype``)."""
        return 2 * self.layers * self.kv_heads * self.head_dim * dtype.itemsize


def read_config(path: Path) -> dict:
    file = Path(path) / "config.json"
    if not file.is_file():
        raise EngineError(f"base model folder {path} has no config.json")
    config = json.loads(file.read_text())
    archs = set(config.get("architectures") or [])
    if not archs & SUPPORTED:
        raise EngineError(f"{path}: architecture {sorted(archs)} is not served by the tenfold engine; "
                          f"supported: {sorted(SUPPORTED)}")
    return config


def model_shape(config: dict) -> ModelShape:
    heads = int(config["num_attention_heads"])
    hidden = int(config["hidden_size"])
    max_context = int(config.get("max_position_embeddings") or 2048)
    window = config.get("sliding_window")
    if window and config.get("use_sliding_window", True):
        # Sliding-window attention (Mistral v0.1) equals full attention up to the window: serve that much.
        max_context = min(max_context, int(window))
    return ModelShape(
        vocab_size=int(config["vocab_size"]), hidden=hidden, layers=int(config["num_hidden_layers"]), heads=heads,
        kv_heads=int(config.get("num_key_value_heads") or heads),
        head_dim=int(config.get("head_dim") or hidden // heads), intermediate=int(config["intermediate_size"]),
        eps=float(config.get("rms_norm_eps", 1e-6)), max_context=max_context,
        tied=bool(config.get("tie_word_embeddings", False)),
    )


