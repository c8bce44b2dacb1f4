"""The Llama-family model (Llama, Qwen2, Mistral, SmolLM) read straight from Hugging Face safetensors and
``config.json``, run over the paged KV cache with per-row LoRA.

Owns: loading and fusing the base weights (q/k/v into one matrix, gate/up into one) and the forward pass
over one scheduler step's flattened tokens. Does not own: index tensors (``runner``), adapter residency
(``lora``), sampling.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from tenfold.engine.layers import (
    AttentionMeta,
    Linear,
    Rotary,
    empty_large,
    paged_attention,
    rms_norm,
    write_kv,
)
from tenfold.engine.lora_stacks import LoraPlan, add_lora
from tenfold.engine.shapes import model_shape, read_config
from tenfold.engine.types import EngineError


class StepInterrupted(Exception):
    """``forward`` stopped between layers because its ``interrupt`` said so. Nothing of the step counts:
    the KV it wrote for its tokens is rewritten identically when the step runs again."""


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    files = sorted(Path(path).glob("*.safetensors"))
    if not files:
        raise EngineError(f"{path} holds no .safetensors weights")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(str(f)))
    return {k.removeprefix("model."): v for k, v in state.items()}


class LlamaModel:
    """Base weights plus the forward pass. Weights are plain tensors (no ``nn.Module``)."""

    def __init__(self, path: Path, *, dtype: torch.dtype = torch.float32, device: str = "cpu",
                 compute_dtype: torch.dtype | None = None) -> None:
        """``dtype``: activations, norms and the residual stream; ``compute_dtype`` (default: ``dtype``): the
        base linears' weights and products and the KV cache (on CPU, a 16-bit format the CPU multiplies
        faster while ``dtype`` stays float32)."""
        self.config = read_config(path)
        self.shape = s = model_shape(self.config)
        self.dtype, self.device = dtype, torch.device(device)
        self.compute_dtype = compute_dtype or dtype
        lin = {"compute_dtype": compute_dtype} if compute_dtype not in (None, dtype) else {}
        state = _load_state(path)

        def take(name: str) -> torch.Tensor:
            if name not in state:
                raise EngineError(f"{path}: weight {name!r} is missing")
            return state.pop(name).to(device=self.device, dtype=dtype).contiguous()

        self.embed = take("embed_tokens.weight")
        self.norm = take("norm.weight")
        # The LM head stays in the activations' format: logits rounded to bfloat16 (steps of 0.125 at 25) tie
        # often enough to flip greedy answers ("What is the capital of France?" on SmolLM2-135M did).
        self.lm_head = Linear(self.embed if s.tied or "lm_head.weight" not in state else take("lm_head.weight"))
        self.layers: list[dict[str, torch.Tensor | Linear]] = []
        for i in range(s.layers):
            p = f"layers.{i}."
            qkv_bias = None
            if p + "self_attn.q_proj.bias" in state:  # Qwen2
                qkv_bias = torch.cat([take(p + f"self_attn.{n}_proj.bias") for n in "qkv"]).contiguous()
            self.layers.append({
                "in_norm": take(p + "input_layernorm.weight"),
                "post_norm": take(p + "post_attention_layernorm.weight"),
                "qkv": Linear(torch.cat([take(p + f"self_attn.{n}_proj.weight") for n in "qkv"]).contiguous(), qkv_bias,
                              **lin),
                "o": Linear(take(p + "self_attn.o_proj.weight"), **lin),
                "gate_up": Linear(torch.cat([take(p + "mlp.gate_proj.weight"),
                                             take(p + "mlp.up_proj.weight")]).contiguous(), **lin),
                "down": Linear(take(p + "mlp.down_proj.weight"), **lin),
            })
        self.rotary = Rotary(self.config, s.head_dim, s.max_context, dtype, self.device)
        self.scale = s.head_dim**-0.5
        self.q_size, self.kv_size = s.heads * s.head_dim, s.kv_heads * s.head_dim

    def allocate_kv(self, num_blocks: int, block_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        s = self.shape
        shape = (num_blocks, block_size, s.kv_heads, s.head_dim)
        kv = self.compute_dtype
        return [(empty_large(shape, dtype=kv, device=self.device).zero_(),
                 empty_large(shape, dtype=kv, device=self.device).zero_()) for _ in range(s.layers)]

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, meta: AttentionMeta,
                kv: list[tuple[torch.Tensor, torch.Tensor]], lora: LoraPlan | None,
                logit_rows: torch.Tensor, interrupt: Callable[[], bool] | None = None) -> torch.Tensor:
        """Run the step's ``T`` tokens; return logits [len(logit_rows), vocab] (float32). ``interrupt`` is
        asked before each layer; when it says True the step stops (``StepInterrupted``)."""
        s = self.shape
        h = F.embedding(input_ids, self.embed)
        rope = self.rotary.tables(positions)
        for i, w in enumerate(self.layers):
            if interrupt is not None and interrupt():
                raise StepInterrupted(f"interrupted before layer {i}")
            x = rms_norm(h, w["in_norm"], s.eps)
            qkv = w["qkv"](x)
            if lora:
                add_lora(qkv, x, lora, i, "qkv")
            q = qkv[:, : self.q_size].view(-1, s.heads, s.head_dim)
            k = qkv[:, self.q_size : self.q_size + self.kv_size].view(-1, s.kv_heads, s.head_dim)
            v = qkv[:, self.q_size + self.kv_size :].view(-1, s.kv_heads, s.head_dim)
            q = self.rotary.apply(q, rope)
            k = self.rotary.apply(k, rope)
            cache_k, cache_v = kv[i]
            v = v.contiguous()
            write_kv(cache_k, cache_v, k, v, meta.slot_mapping)
            if cache_k.dtype != k.dtype:  # a 16-bit cache: a chunk attends over its own K/V as the cache holds
                k, v = k.to(cache_k.dtype).to(k.dtype), v.to(cache_v.dtype).to(v.dtype)  # them, as a prefix hit does
            attn = paged_attention(q, k, v, cache_k, cache_v, meta, self.scale).reshape(-1, self.q_size)
            o = w["o"](attn)
            if lora:
                add_lora(o, attn, lora, i, "o")
            h = h + o
            x = rms_norm(h, w["post_norm"], s.eps)
            gu = w["gate_up"](x)
            if lora:
                add_lora(gu, x, lora, i, "gate_up")
            a = F.silu(gu[:, : s.intermediate]) * gu[:, s.intermediate :]
            d = w["down"](a)
            if lora:
                add_lora(d, a, lora, i, "down")
            h = h + d
        h = rms_norm(h.index_select(0, logit_rows), self.norm, s.eps)
        return self.lm_head(h).float()
