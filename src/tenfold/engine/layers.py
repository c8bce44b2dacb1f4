"""Building blocks of the Llama-family forward: the base linears (``Linear``: packed weights, the fastest
kernel the device has), RMSNorm, rotary embeddings (with the model's scaling), and paged-KV attention for
decode rows and prefill chunks (the batched LoRA delta is in ``lora_stacks``).

Owns: the tensor math, stateless. Does not own: weights (``model``), which tokens run (``scheduler``),
or building the index tensors (``runner``).
"""

from __future__ import annotations

import ctypes
import math
import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tenfold.engine.kernels import KV_KINDS, linear_kernel_available
from tenfold.engine.kernels import ext as _cpu_kernels
from tenfold.engine.types import EngineError

_HUGE_PAGE = 2 << 20
_MADV_HUGEPAGE = 14
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def empty_large(shape: tuple[int, ...], *, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``torch.empty`` for the engine's big long-lived pools (KV cache, LoRA slot stacks). On Linux CPUs the
    memory is advised to use transparent huge pages: one fault maps 2 MB instead of 4 KB (first touch of a
    1 GB pool drops from ~1 s of page faults to a few ms here) and scattered KV blocks and adapter slots
    cost far fewer TLB misses. A no-op elsewhere or where the kernel says no."""
    t = torch.empty(shape, dtype=dtype, device=device)
    if _libc is not None and t.device.type == "cpu" and t.nbytes >= 2 * _HUGE_PAGE:
        start = -(-t.data_ptr() // _HUGE_PAGE) * _HUGE_PAGE
        end = (t.data_ptr() + t.nbytes) // _HUGE_PAGE * _HUGE_PAGE
        _libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), ctypes.c_int(_MADV_HUGEPAGE))
    return t


def zeros_large_off_thread(numel: int, *, dtype: torch.dtype) -> torch.Tensor:
    """A zero-filled CPU buffer like ``empty_large``, filled by libc's ``memset`` rather than a PyTorch
    kernel: a thread other than the engine's may call it (no OpenMP pool of its own), and the first touch
    of fresh memory, which costs about a second per GB in this VM, happens there instead of in a step."""
    t = empty_large((numel,), dtype=dtype, device=torch.device("cpu"))
    ctypes.memset(t.data_ptr(), 0, t.nbytes)  # ctypes releases the GIL for the call
    return t


class Linear:
    """``y = x @ W.T + b`` for one base weight, run by the fastest kernel this device has.

    On CPU in float32 with the C extension the weight is packed once into 32-column blocks for its
    register-tiled kernel (``linear_packed`` in ``_cpu_kernels.c``): on this project's reference CPU it
    beats oneDNN's pre-packed kernel at every row count a serving step multiplies: 1.0-1.2x at 64-512
    rows, 1.0-1.3x at 16, 1.4-3x for one row (``bench/serving.py --section linears``). Without the
    extension, on CPU float32 the weight is pre-packed into oneDNN's blocked layout (what PyTorch's own
    compiler does for frozen CPU linears; 1.3-2x ``F.linear`` there). Elsewhere (CUDA, other dtypes) it is
    plain ``F.linear``.

    With a 16-bit ``compute_dtype`` on CPU (the engine's format where the CPU multiplies it faster, e.g.
    bfloat16 on AVX512-BF16 or AMX) the weight is stored in that format, pre-packed for oneDNN, and
    float32 activations are rounded to it on the way in and the product (accumulated in float32 by oneDNN)
    comes back as float32: the residual stream, norms and the LoRA delta stay float32 (as under autocast).
    """

    __slots__ = ("weight", "bias", "packed", "blocks", "block_bias", "out_features", "in_features", "compute")

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                 compute_dtype: torch.dtype | None = None) -> None:
        self.out_features, self.in_features = weight.shape
        self.compute = None
        if compute_dtype is not None and compute_dtype != weight.dtype and weight.device.type == "cpu":
            self.compute = compute_dtype  # activations arrive in weight's dtype; the product runs in this one
            weight = weight.to(compute_dtype).contiguous()
            bias = bias.to(compute_dtype) if bias is not None else None
        self.bias = bias
        self.packed = self.blocks = self.block_bias = None
        self.weight: torch.Tensor | None = weight
        if linear_kernel_available(weight.device, weight.dtype):
            n, k = weight.shape
            nb = -(-n // LINEAR_BLOCK)
            padded = weight.new_zeros(nb * LINEAR_BLOCK, k)
            padded[:n] = weight
            self.blocks = padded.view(nb, LINEAR_BLOCK, k).transpose(1, 2).contiguous()  # [blocks, in, 32]
            if bias is not None:
                self.block_bias = bias.new_zeros(nb * LINEAR_BLOCK)
                self.block_bias[:n] = bias
            self.weight = None  # the packed copy replaces it
        elif _onednn_packing(weight):
            self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, 64)
            self.weight = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.blocks is not None:
            if x.dim() != 2 or x.dtype != torch.float32 or x.device.type != "cpu" or x.shape[1] != self.in_features:
                raise EngineError(f"Linear: expected float32 CPU activations [rows, {self.in_features}], "
                                  f"got {x.dtype} {tuple(x.shape)} on {x.device}")
            rows = x.shape[0]
            if x.stride(1) != 1 or (rows > 1 and x.stride(0) < self.in_features):
                x = x.contiguous()
            y = torch.empty(rows, self.out_features, dtype=torch.float32)
            _cpu_kernels.linear_packed(y.data_ptr(), self.out_features, x.data_ptr(),
                                       x.stride(0) if rows > 1 else self.in_features, rows,
                                       self.blocks.data_ptr(), self.out_features, self.in_features,
                                       self.block_bias.data_ptr() if self.block_bias is not None else 0,
                                       torch.get_num_threads())
            return y
        if self.compute is not None:
            xc = x.to(self.compute)
            one = xc.shape[0] == 1
            if one:  # oneDNN multiplies a single row by another kernel whose sums can differ in the last bit:
                xc = xc.expand(2, -1)  # two rows keep a row's result independent of the batch around it
            y = (torch.ops.mkldnn._linear_pointwise(xc, self.packed, self.bias, "none", [], "") if self.packed
                 is not None else F.linear(xc, self.weight, self.bias))
            return (y[:1] if one else y).to(x.dtype)
        if self.packed is not None:
            return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)


LINEAR_BLOCK = 32  # columns per packed block (LIN_NB in _cpu_kernels.c)


def _onednn_packing(weight: torch.Tensor) -> bool:
    return (weight.device.type == "cpu" and weight.dtype in (torch.float32, torch.bfloat16, torch.float16)
            and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_reorder_linear_weight") and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return F.rms_norm(x, (x.shape[-1],), weight, eps)


def rope_inv_freq(config: dict, head_dim: int) -> tuple[torch.Tensor, float]:
    """Inverse frequencies and the attention scaling factor for the model's rotary settings.

    Reads both conventions: ``rope_theta`` + ``rope_scaling`` (transformers 4) and ``rope_parameters``
    (transformers 5, which is how converted models are saved here).
    """
    params = config.get("rope_parameters") or {}
    scaling = {**params, **(config.get("rope_scaling") or {})}
    base = float(params.get("rope_theta") or config.get("rope_theta") or 10000.0)
    partial = float(params.get("partial_rotary_factor") or config.get("partial_rotary_factor") or 1.0)
    dim = int(head_dim * partial)
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    kind = scaling.get("rope_type") or scaling.get("type") or "default"
    if kind == "default":
        return inv_freq.float(), 1.0
    if kind == "linear":
        return (inv_freq / float(scaling["factor"])).float(), 1.0
    if kind == "llama3":
        factor = float(scaling["factor"])
        low, high = float(scaling.get("low_freq_factor", 1.0)), float(scaling.get("high_freq_factor", 4.0))
        old_ctx = float(scaling.get("original_max_position_embeddings", 8192))
        low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
        smooth = (old_ctx / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
        return torch.where(medium, smoothed, scaled).float(), 1.0
    raise EngineError(f"rope_scaling type {kind!r} is not supported by the tenfold engine "
                      "(supported: default, linear, llama3)")


class Rotary:
    """cos/sin tables for every position up to the model's context, looked up per token."""

    def __init__(self, config: dict, head_dim: int, max_positions: int, dtype: torch.dtype, device: torch.device):
        inv_freq, attn_factor = rope_inv_freq(config, head_dim)
        t = torch.arange(max_positions, dtype=torch.float32)
        freqs = torch.outer(t, inv_freq)
        emb = torch.cat([freqs, freqs], dim=-1)
        self.rot_dim = emb.shape[-1]
        self.cos = (emb.cos() * attn_factor).to(device=device, dtype=dtype)
        self.sin = (emb.sin() * attn_factor).to(device=device, dtype=dtype)

    def tables(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin rows of ``positions`` ([tokens, 1, rot_dim] each), looked up once per step."""
        return self.cos[positions].unsqueeze(1), self.sin[positions].unsqueeze(1)

    def apply(self, x: torch.Tensor, tables: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """``x``: [tokens, heads, head_dim]; rotate-half convention (Hugging Face Llama)."""
        cos, sin = tables
        rot, rest = x[..., : self.rot_dim], x[..., self.rot_dim :]
        half = self.rot_dim // 2
        rotated = torch.cat([-rot[..., half:], rot[..., :half]], dim=-1)
        out = rot * cos + rotated * sin
        return out if rest.shape[-1] == 0 else torch.cat([out, rest], dim=-1)


@dataclass
class AttentionMeta:
    """Per-step attention layout built by the runner.

    Decode rows (one new token each) are attended together over their gathered blocks; each prefill chunk
    is attended on its own with a causal mask offset by the tokens already in its blocks.
    """

    slot_mapping: torch.Tensor  # [T] flat KV slot written by each new token
    decode_rows: torch.Tensor | None  # [D] row index of each decode token (rows 0..D-1: the runner puts them first)
    decode_blocks: torch.Tensor | None  # [D, max_blocks] block table, padded with block 0
    decode_lens: torch.Tensor | None  # [D] keys visible to each decode row (its context length)
    decode_mask: torch.Tensor | None  # [D, 1, 1, max_blocks*block_size] True where visible; None with the kernel
    prefills: list[tuple[int, int, torch.Tensor, torch.Tensor]]  # (row start, rows, block table, mask [rows, L])


def write_kv(cache_k: torch.Tensor, cache_v: torch.Tensor, k: torch.Tensor, v: torch.Tensor, slots: torch.Tensor):
    """Store the new tokens' K/V at their slots; caches are [blocks, block_size, kv_heads, head_dim]."""
    flat_k = cache_k.view(-1, *cache_k.shape[2:])
    flat_v = cache_v.view(-1, *cache_v.shape[2:])
    flat_k.index_copy_(0, slots, k.to(cache_k.dtype))  # a 16-bit cache rounds the step's float32 K/V once
    flat_v.index_copy_(0, slots, v.to(cache_v.dtype))


def _gather(cache: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
    """[seqs, max_blocks] block ids → [seqs, kv_heads, max_blocks*block_size, head_dim]."""
    n, nb = blocks.shape
    g = cache.index_select(0, blocks.reshape(-1))  # [n*nb, bs, kvh, hd]
    return g.view(n, nb * cache.shape[1], cache.shape[2], cache.shape[3]).transpose(1, 2)


def paged_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cache_k: torch.Tensor, cache_v: torch.Tensor,
                    meta: AttentionMeta, scale: float) -> torch.Tensor:
    """``q``: [T, heads, head_dim] → [T, heads, head_dim], reading keys/values from the paged cache; ``k``/``v``
    ([T, kv_heads, head_dim]) are the step's own, already written to the cache: a prefill chunk that starts
    its sequence attends over them directly (causal), without gathering its blocks."""
    out = torch.empty_like(q)
    if meta.decode_rows is not None:
        d = meta.decode_rows.shape[0]
        if meta.decode_mask is None:
            decode_attention_kernel(out[:d], q[:d], cache_k, cache_v, meta.decode_blocks, meta.decode_lens, scale)
        else:
            qd = q[:d].unsqueeze(2)  # [D, H, 1, hd]
            k = _gather(cache_k, meta.decode_blocks).to(q.dtype)
            v = _gather(cache_v, meta.decode_blocks).to(q.dtype)
            o = F.scaled_dot_product_attention(qd, k, v, attn_mask=meta.decode_mask, scale=scale, enable_gqa=True)
            out[:d] = o.squeeze(2)
    for start, rows, blocks, mask in meta.prefills:
        qp = q[start : start + rows].transpose(0, 1).unsqueeze(0)  # [1, H, rows, hd]
        if mask.shape[1] == rows:  # nothing cached before this chunk
            kp = k[start : start + rows].transpose(0, 1).unsqueeze(0)
            vp = v[start : start + rows].transpose(0, 1).unsqueeze(0)
            o = F.scaled_dot_product_attention(qp, kp, vp, is_causal=True, scale=scale, enable_gqa=True)
        else:
            kp = _gather(cache_k, blocks.unsqueeze(0))[:, :, : mask.shape[1]].to(q.dtype)
            vp = _gather(cache_v, blocks.unsqueeze(0))[:, :, : mask.shape[1]].to(q.dtype)
            o = F.scaled_dot_product_attention(qp, kp, vp, attn_mask=mask, scale=scale, enable_gqa=True)
        out[start : start + rows] = o.squeeze(0).transpose(0, 1)
    return out


def decode_attention_kernel(out: torch.Tensor, q: torch.Tensor, cache_k: torch.Tensor, cache_v: torch.Tensor,
                            blocks: torch.Tensor, lens: torch.Tensor, scale: float) -> None:
    """Decode rows' attention read in place from the paged cache by the C kernel (no gathered copy).

    ``out``/``q``: [D, heads, head_dim] float32; caches [blocks, block_size, kv_heads, head_dim] float32 or
    bfloat16 (read in place, converted per element); ``blocks``
    [D, width] int64 whose first ``ceil(lens[i] / block_size)`` entries are valid block ids of the cache;
    ``lens`` [D] int64. Shapes are checked here; the kernel checks lengths and block ids (ValueError).
    """
    d, heads, head_dim = q.shape
    num_blocks, block_size, kv_heads, kv_dim = cache_k.shape
    width = blocks.shape[1] if blocks.dim() == 2 else 0
    tensors = (out, q, cache_k, cache_v)
    if (any(t.device.type != "cpu" or not t.is_contiguous() for t in tensors)
            or out.dtype != torch.float32 or q.dtype != torch.float32 or cache_k.dtype not in KV_KINDS
            or cache_v.dtype != cache_k.dtype or cache_v.shape != cache_k.shape or out.shape != q.shape
            or kv_dim != head_dim
            or blocks.dtype != torch.long or lens.dtype != torch.long or not blocks.is_contiguous()
            or not lens.is_contiguous() or blocks.shape[0] != d or lens.shape != (d,) or width == 0):
        raise EngineError("decode_attention_kernel: tensors of the wrong shape, dtype, device or layout")
    _cpu_kernels.paged_decode_attention(out.data_ptr(), q.data_ptr(), cache_k.data_ptr(), cache_v.data_ptr(),
                                        blocks.data_ptr(), lens.data_ptr(), d, num_blocks, heads, kv_heads, head_dim, block_size,
                                        width, scale, torch.get_num_threads(), KV_KINDS[cache_k.dtype])
