"""The engine's CPU kernels against the PyTorch math they replace: oneDNN pre-packed linears against
``F.linear``, and the C paged decode attention against gather + SDPA, on random paged caches with
grouped-query heads, ragged context lengths and scattered blocks. ``make install`` builds the C
extension; these tests fail (not skip) when it is missing, because serving speed depends on it.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tenfold.engine import layers
from tenfold.engine.layers import AttentionMeta, Linear, decode_attention_kernel, paged_attention
from tenfold.engine.types import EngineError


def test_the_c_extension_is_built():
    assert layers._cpu_kernels is not None, "tenfold.engine._cpu_kernels is missing: run `make install`"
    assert layers.decode_kernel_available(torch.device("cpu"), torch.float32)
    assert not layers.decode_kernel_available(torch.device("cpu"), torch.bfloat16)


@pytest.mark.parametrize("rows", [1, 5, 64])
def test_packed_linear_matches_f_linear(rows):
    torch.manual_seed(rows)
    w, b, x = torch.randn(96, 40), torch.randn(96), torch.randn(rows, 40)
    lin = Linear(w, b)
    assert lin.packed is not None and lin.weight is None  # packed on CPU float32
    torch.testing.assert_close(lin(x), F.linear(x, w, b), rtol=1e-5, atol=1e-4)
    half = Linear(w.bfloat16())  # not packed: plain F.linear
    assert half.packed is None
    torch.testing.assert_close(half(x.bfloat16()), F.linear(x.bfloat16(), w.bfloat16()))


def _paged_case(seed: int, *, rows: int, heads: int, kv_heads: int, head_dim: int = 16, block_size: int = 4):
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(1, 23, (rows,), generator=g)
    width = int(-(-lens.max() // block_size))
    num_blocks = rows * width + 3
    perm = torch.randperm(num_blocks, generator=g)
    tables = perm[: rows * width].view(rows, width).contiguous()
    cache_k = torch.randn(num_blocks, block_size, kv_heads, head_dim, generator=g)
    cache_v = torch.randn(num_blocks, block_size, kv_heads, head_dim, generator=g)
    q = torch.randn(rows, heads, head_dim, generator=g)
    return q, cache_k, cache_v, tables, lens


def _meta(tables, lens, block_size, *, masked: bool) -> AttentionMeta:
    mask = None
    if masked:
        mask = (torch.arange(tables.shape[1] * block_size)[None, :] < lens[:, None])[:, None, None, :]
    return AttentionMeta(slot_mapping=torch.zeros(0, dtype=torch.long), decode_rows=torch.arange(len(lens)),
                         decode_blocks=tables, decode_lens=lens, decode_mask=mask, prefills=[])


@pytest.mark.parametrize("heads,kv_heads", [(4, 4), (6, 2), (9, 3), (8, 1)])
def test_decode_kernel_matches_sdpa(heads, kv_heads):
    q, ck, cv, tables, lens = _paged_case(heads * 10 + kv_heads, rows=7, heads=heads, kv_heads=kv_heads)
    scale = 16**-0.5
    ref = paged_attention(q, ck, cv, _meta(tables, lens, 4, masked=True), scale)  # gather + SDPA
    got = paged_attention(q, ck, cv, _meta(tables, lens, 4, masked=False), scale)  # the C kernel
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=2e-6)


def test_decode_kernel_ignores_keys_past_each_rows_length():
    q, ck, cv, tables, lens = _paged_case(3, rows=4, heads=4, kv_heads=2)
    out = torch.empty_like(q)
    decode_attention_kernel(out, q, ck, cv, tables, lens, 0.25)
    # poison every cache slot no row may see: the result must not change
    visible = torch.zeros(ck.shape[0] * ck.shape[1], dtype=torch.bool)
    for r in range(4):
        for t in range(int(lens[r])):
            visible[tables[r, t // 4] * 4 + t % 4] = True
    ck.view(-1, *ck.shape[2:])[~visible] = 1e6
    cv.view(-1, *cv.shape[2:])[~visible] = float("nan")
    again = torch.empty_like(q)
    decode_attention_kernel(again, q, ck, cv, tables, lens, 0.25)
    torch.testing.assert_close(again, out, rtol=0, atol=0)


def test_decode_kernel_rejects_bad_inputs():
    q, ck, cv, tables, lens = _paged_case(4, rows=3, heads=4, kv_heads=2)
    out = torch.empty_like(q)
    with pytest.raises(EngineError):
        decode_attention_kernel(out, q.double(), ck, cv, tables, lens, 0.25)
    with pytest.raises(EngineError):
        decode_attention_kernel(out, q, ck, cv, tables.int(), lens, 0.25)
    with pytest.raises(EngineError):
        decode_attention_kernel(out, q, ck, cv[:, :, :1], tables, lens, 0.25)
    with pytest.raises(EngineError):
        decode_attention_kernel(out, q.transpose(0, 1).contiguous().transpose(0, 1), ck, cv, tables, lens, 0.25)
    with pytest.raises(ValueError, match="out of range"):  # a length past the table's blocks
        decode_attention_kernel(out, q, ck, cv, tables, lens + tables.shape[1] * 4, 0.25)
    with pytest.raises(ValueError, match="out of range"):  # a block id outside the cache
        decode_attention_kernel(out, q, ck, cv, tables + ck.shape[0], lens, 0.25)
    with pytest.raises(ValueError, match="out of range"):
        decode_attention_kernel(out, q, ck, cv, tables, lens * 0, 0.25)
