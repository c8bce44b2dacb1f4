"""The engine's CPU kernels against the PyTorch math they replace: the packed base linears (C kernel, and
oneDNN where the kernel is missing) against ``F.linear``, and the C paged decode attention against gather + SDPA, on random paged caches with
grouped-query heads, ragged context lengths and scattered blocks. ``make install`` builds the C
extension; these tests fail (not skip) when it is missing, because serving speed depends on it.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tenfold.engine import kernels, layers
from tenfold.engine.layers import AttentionMeta, Linear, decode_attention_kernel, paged_attention
from tenfold.engine.types import EngineError


def test_the_c_extension_is_built():
    assert kernels.ext is not None, "tenfold.engine._cpu_kernels is missing: run `make install`"
    assert kernels.decode_kernel_available(torch.device("cpu"), torch.float32)
    assert not kernels.decode_kernel_available(torch.device("cpu"), torch.bfloat16)


@pytest.mark.parametrize("rows", [1, 5, 8, 13, 64])  # register tiles of 8 rows (4 without AVX-512) and the rest
@pytest.mark.parametrize("out,inner", [(96, 40), (100, 37), (31, 7)])  # whole and partial 32-column blocks
def test_packed_linear_matches_f_linear(rows, out, inner):
    torch.manual_seed(rows * out)
    w, b, x = torch.randn(out, inner), torch.randn(out), torch.randn(rows, inner)
    lin = Linear(w, b)
    assert lin.blocks is not None and lin.weight is None  # packed for the C kernel on CPU float32
    torch.testing.assert_close(lin(x), F.linear(x, w, b), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(Linear(w)(x), F.linear(x, w), rtol=1e-5, atol=1e-4)
    strided = torch.randn(inner, rows).t()  # a column stride other than 1: copied first
    torch.testing.assert_close(lin(strided), F.linear(strided, w, b), rtol=1e-5, atol=1e-4)
    wide = torch.randn(rows, inner + 9)[:, 3 : 3 + inner]  # a row stride other than the width: read in place
    torch.testing.assert_close(lin(wide), F.linear(wide, w, b), rtol=1e-5, atol=1e-4)
    half = Linear(w.bfloat16())  # bfloat16 on CPU: pre-packed for oneDNN, not the float32 C kernel
    assert half.packed is not None and half.blocks is None
    torch.testing.assert_close(half(x.bfloat16()), F.linear(x.bfloat16(), w.bfloat16()), rtol=2e-2, atol=2e-2)
    with pytest.raises(EngineError, match="float32 CPU activations"):
        lin(x.bfloat16())


@pytest.mark.parametrize("isa", ["avx512", "avx2", "generic"])  # 8-row tiles, 4-row tiles, portable code
def test_packed_linear_on_each_instruction_set(isa):
    ext = kernels.ext
    before = ext.linear_isa()
    try:
        ext.linear_isa(isa)
    except ValueError:
        pytest.skip(f"this CPU has no {isa}")
    try:
        torch.manual_seed(3)
        for rows, out, inner in [(1, 31, 7), (7, 96, 40), (13, 100, 37), (64, 70, 130)]:
            w, b, x = torch.randn(out, inner), torch.randn(out), torch.randn(rows, inner)
            torch.testing.assert_close(Linear(w, b)(x), F.linear(x, w, b), rtol=1e-5, atol=1e-4)
    finally:
        ext.linear_isa(before)


def test_onednn_packed_linear_without_the_kernel(monkeypatch):
    """Where the extension lacks the linear kernel, CPU float32 weights are pre-packed for oneDNN instead."""
    monkeypatch.setattr(layers, "linear_kernel_available", lambda device, dtype: False)
    torch.manual_seed(0)
    w, b, x = torch.randn(96, 40), torch.randn(96), torch.randn(7, 40)
    lin = Linear(w, b)
    assert lin.blocks is None and lin.packed is not None and lin.weight is None
    torch.testing.assert_close(lin(x), F.linear(x, w, b), rtol=1e-5, atol=1e-4)


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


@pytest.mark.parametrize("head_dim", [16, 24, 64, 128])  # the scalar path, and whole 16- and 64-wide vectors
@pytest.mark.parametrize("heads,kv_heads", [(4, 4), (6, 2), (9, 3), (8, 1)])
def test_decode_kernel_matches_sdpa(heads, kv_heads, head_dim):
    q, ck, cv, tables, lens = _paged_case(heads * 10 + kv_heads, rows=7, heads=heads, kv_heads=kv_heads,
                                          head_dim=head_dim)
    scale = head_dim**-0.5
    ref = paged_attention(q, None, None, ck, cv, _meta(tables, lens, 4, masked=True), scale)  # gather + SDPA
    got = paged_attention(q, None, None, ck, cv, _meta(tables, lens, 4, masked=False), scale)  # the C kernel
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("head_dim", [16, 24, 64])
@pytest.mark.parametrize("heads,kv_heads", [(6, 2), (9, 3)])
def test_decode_kernel_reads_a_bfloat16_cache(heads, kv_heads, head_dim):
    """A bfloat16 KV cache (the engine's 16-bit number format) is read in place and converted exactly: the
    result equals gather + SDPA in float32 over the same rounded keys and values."""
    q, ck, cv, tables, lens = _paged_case(heads + kv_heads, rows=7, heads=heads, kv_heads=kv_heads, head_dim=head_dim)
    ck16, cv16 = ck.to(torch.bfloat16), cv.to(torch.bfloat16)
    scale = head_dim**-0.5
    ref = paged_attention(q, None, None, ck16.float(), cv16.float(), _meta(tables, lens, 4, masked=True), scale)
    got = paged_attention(q, None, None, ck16, cv16, _meta(tables, lens, 4, masked=False), scale)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=2e-6)
    gathered = paged_attention(q, None, None, ck16, cv16, _meta(tables, lens, 4, masked=True), scale)  # no kernel
    torch.testing.assert_close(gathered, ref, rtol=1e-5, atol=2e-6)
    with pytest.raises(EngineError):  # a float16 cache is not a kind the kernel reads
        decode_attention_kernel(torch.empty_like(q), q, ck.half(), cv.half(), tables, lens, scale)


@pytest.mark.parametrize("rows", [1, 16, 64])
def test_a_16_bit_linear_rounds_inputs_and_weights_and_returns_float32(rows):
    """``Linear(compute_dtype=bfloat16)``: the weight stored and multiplied in bfloat16 by oneDNN, float32
    activations rounded on the way in, the float32-accumulated product returned as float32."""
    torch.manual_seed(rows)
    w, b, x = torch.randn(96, 40) / 6, torch.randn(96), torch.randn(rows, 40)
    lin = Linear(w, b, compute_dtype=torch.bfloat16)
    assert lin.blocks is None and lin.compute == torch.bfloat16
    y = lin(x)
    assert y.dtype == torch.float32
    want = F.linear(x.bfloat16().float(), w.bfloat16().float(), b.bfloat16().float())
    torch.testing.assert_close(y, want, rtol=2e-2, atol=2e-2)  # the sum itself rounded once to bfloat16
    assert (y - F.linear(x, w, b)).abs().max() > 0  # it did run in bfloat16


@pytest.mark.parametrize("out,inner", [(960, 576), (576, 1536), (3072, 576)])  # the embedded model's linears
def test_a_16_bit_linear_gives_a_row_the_same_result_in_any_batch(out, inner):
    """A row's product does not depend on the rows around it (one row, a decode batch, a prefill chunk): the
    promise that a seed gives the same tokens whatever else is in the batch holds in bfloat16."""
    torch.manual_seed(out)
    lin = Linear(torch.randn(out, inner) / inner**0.5, compute_dtype=torch.bfloat16)
    x = torch.randn(300, inner)
    full = lin(x)
    for rows in (1, 2, 7, 16, 64, 200):
        torch.testing.assert_close(lin(x[:rows]), full[:rows], rtol=0, atol=0)


@pytest.mark.parametrize("head_dim", [16, 64])
def test_decode_kernel_ignores_keys_past_each_rows_length(head_dim):
    q, ck, cv, tables, lens = _paged_case(3, rows=4, heads=4, kv_heads=2, head_dim=head_dim)
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


def _stacks(capacity: int, rank: int, seed: int, *, dtype: torch.dtype = torch.float32, wide: bool = False):
    from tenfold.engine.lora_stacks import LoraStacks
    from tenfold.engine.shapes import ModelShape

    if wide:  # inner dimensions past the kernel's register-tile threshold (64), not multiples of 4 or 16
        shape = ModelShape(vocab_size=10, hidden=130, layers=2, heads=5, kv_heads=1, head_dim=26, intermediate=203,
                           eps=1e-5, max_context=64, tied=True)
    else:
        shape = ModelShape(vocab_size=10, hidden=24, layers=2, heads=4, kv_heads=2, head_dim=6, intermediate=40,
                           eps=1e-5, max_context=64, tied=True)
    st = LoraStacks(shape, dtype=dtype, device=torch.device("cpu"))
    st.ensure(capacity, rank)
    g = torch.Generator().manual_seed(seed)
    for layer in range(shape.layers):
        for t in list(st.A[layer].values()) + list(st.B[layer].values()):
            t.copy_(torch.randn(t.shape, generator=g))
    return shape, st


@pytest.mark.parametrize("group", ["qkv", "o", "gate_up", "down"])
def test_lora_kernel_matches_matmuls(group):
    from tenfold.engine.lora_stacks import LoraPlan, add_lora

    shape, st = _stacks(capacity=5, rank=4, seed=len(group))
    x = torch.randn(50, shape.group_in(group))
    y0 = torch.randn(50, sum(shape.group_out(group)))
    # rows 0..49, slots reused; 1-16 rows (register tiles of 4 rows, remainders, a full piece), widths that
    # are and are not multiples of the kernel's 16-column tile
    segments = [(0, 1, 3), (1, 2, 0), (3, 1, 4), (4, 5, 3), (9, 2, 1), (11, 16, 2), (27, 8, 0), (35, 15, 4)]
    ref = y0.clone()
    add_lora(ref, x, LoraPlan(stacks=st, segments=tuple(segments)), 1, group)  # matmuls
    got = y0.clone()
    add_lora(got, x, LoraPlan(stacks=st, kernel_segments=torch.tensor(segments)), 1, group)  # the C kernel
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-4)
    expected = y0.clone()  # and both equal the definition, row by row
    a, offs = st.A[1][group], st.offsets[group]
    for start, n, slot in segments:
        h = x[start : start + n] @ a[slot]
        for i, m in enumerate(["q_proj", "k_proj", "v_proj"] if group == "qkv" else
                              ["gate_proj", "up_proj"] if group == "gate_up" else [f"{group}_proj"]):
            b = st.B[1][m][slot]
            expected[start : start + n, offs[i] : offs[i] + b.shape[1]] += h[:, i * 4 : (i + 1) * 4] @ b
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)


def test_long_segments_are_cut_into_kernel_pieces():
    from tenfold.engine.lora_stacks import KERNEL_ROWS, kernel_pieces

    assert KERNEL_ROWS == 16
    assert kernel_pieces([(0, 1, 5), (1, 40, 2), (41, 16, 0)]) == [
        (0, 1, 5), (1, 16, 2), (17, 16, 2), (33, 8, 2), (41, 16, 0)]


def test_lora_kernel_rejects_out_of_range_segments():
    from tenfold.engine.lora_stacks import GROUP_MODULES, lora_kernel_segments

    shape, st = _stacks(capacity=3, rank=2, seed=1)
    x, y = torch.randn(4, shape.hidden), torch.zeros(4, sum(shape.group_out("qkv")))
    b = [st.B[0][m] for m in GROUP_MODULES["qkv"]]
    for bad in ([0, 1, 3], [3, 2, 0], [0, 0, 0], [-1, 1, 0], [0, 17, 0]):  # slot, rows past y, empty, negative, too long
        with pytest.raises(ValueError, match="out of range"):
            lora_kernel_segments(y, x, torch.tensor([bad]), st.A[0]["qkv"], b, st.offsets["qkv"])
    assert not y.any()  # nothing was written
    with pytest.raises(EngineError):
        lora_kernel_segments(y, x.double(), torch.tensor([[0, 1, 0]]), st.A[0]["qkv"], b, st.offsets["qkv"])


@pytest.mark.parametrize("full", [True, False])
def test_lora_kernel_matches_the_batched_decode_path(full):
    """The decode path kept for GPUs and builds without the extension (batched matmul over slot stacks)."""
    from tenfold.engine.lora_stacks import LoraPlan, add_lora

    shape, st = _stacks(capacity=4, rank=3, seed=7)
    slots = [0, 0, 1, 3, 3, 3] if full else [2, 2]  # rows sorted by slot, as the runner lays them out
    x = torch.randn(len(slots), shape.hidden)
    y0 = torch.randn(len(slots), sum(shape.group_out("gate_up")))
    used = sorted(set(slots))
    pos = [s if full else used.index(s) for s in slots]
    within = [slots[:i].count(s) for i, s in enumerate(slots)]
    plan = LoraPlan(stacks=st, decode_rows=torch.arange(len(slots)), decode_pos=torch.tensor(pos),
                    decode_within=torch.tensor(within), decode_slots=None if full else torch.tensor(used),
                    decode_width=max(within) + 1)
    ref = y0.clone()
    add_lora(ref, x, plan, 0, "gate_up")
    runs = [[i, 1, s] for i, s in enumerate(slots)]
    got = y0.clone()
    add_lora(got, x, LoraPlan(stacks=st, kernel_segments=torch.tensor(runs)), 0, "gate_up")
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-4)


MODULES = {"qkv": ["q_proj", "k_proj", "v_proj"], "o": ["o_proj"], "gate_up": ["gate_proj", "up_proj"],
           "down": ["down_proj"]}


# shrink outputs of 5 to 81 columns: one- and two-vector tiles; for a lone row, strips of 1 to 4 vectors and
# strips followed by an edge (rank 27: q/k/v 81 = 4 x 16 + 16 + 1, gate/up 54 = 3 x 16 + 6)
@pytest.mark.parametrize("rank", [5, 16, 27])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("group", ["qkv", "gate_up", "down"])
def test_lora_kernel_on_long_inner_dimensions_and_16_bit_stacks(dtype, group, rank):
    """Inner dimensions of 130 and 203 (register tiles and strips for the last rows too, with partial sums
    over k and a remainder of k), and stacks in float16 / bfloat16: the kernel equals the definition computed
    in float32 from the stored (rounded) weights, and the matmul path given the same stacks."""
    from tenfold.engine.lora_stacks import LoraPlan, add_lora

    shape, st = _stacks(capacity=3, rank=rank, seed=11, dtype=dtype, wide=True)
    x = torch.randn(40, shape.group_in(group))
    y0 = torch.randn(40, sum(shape.group_out(group)))
    segments = [(0, 1, 2), (1, 2, 0), (3, 3, 1), (6, 4, 2), (10, 5, 0), (15, 7, 1), (22, 16, 2), (38, 2, 1)]
    got = y0.clone()
    add_lora(got, x, LoraPlan(stacks=st, kernel_segments=torch.tensor(segments)), 0, group)
    expected = y0.clone()
    a, offs = st.A[0][group].float(), st.offsets[group]
    for start, n, slot in segments:
        h = x[start : start + n] @ a[slot]
        for i, m in enumerate(MODULES[group]):
            b = st.B[0][m][slot].float()
            expected[start : start + n, offs[i] : offs[i] + b.shape[1]] += h[:, i * rank : (i + 1) * rank] @ b
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)
    fallback = y0.clone()  # the path without the extension (and on GPUs) reads 16-bit stacks too
    add_lora(fallback, x, LoraPlan(stacks=st, segments=tuple(segments)), 0, group)
    torch.testing.assert_close(fallback, expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_lora_kernel_reads_every_finite_16_bit_value_exactly(dtype):
    """Every finite float16 / bfloat16 bit pattern (subnormals, signed zeros, the largest values) comes out of
    the kernel's conversion as the exact float32 PyTorch gives: one-hot rows pick rows of A, an identity B
    passes them through."""
    from tenfold.engine.lora_stacks import lora_kernel_segments

    bits = torch.arange(-(1 << 15), 1 << 15, dtype=torch.int32).to(torch.int16)
    values = bits.view(dtype)
    values = values[torch.isfinite(values.float())]
    rows = values.numel() // 16
    a = values[: rows * 16].reshape(1, rows, 16).contiguous()
    b = torch.eye(16, dtype=dtype).reshape(1, 16, 16)
    x = torch.eye(rows)
    y = torch.zeros(rows, 16)
    sizes, segs, start = [1, 16, 2, 3, 4, 5, 16], [], 0
    while start < rows:  # pieces of every size: full register tiles, the last rows' partial sums, single rows
        n = min(sizes[len(segs) % len(sizes)], rows - start)
        segs.append([start, n, 0])
        start += n
    lora_kernel_segments(y, x, torch.tensor(segs), a, [b], [0])
    assert torch.equal(y, a[0].float())
    assert y.abs().max().item() == values.float().abs().max().item()  # the range ends are in there


def test_slot_writes_refuse_weights_their_dtype_cannot_hold():
    """A float16 slot cannot hold |w| > 65504, no slot holds NaN: the write raises a clear AdapterError and
    leaves the slot as it was."""
    from tenfold.engine.types import AdapterError

    # 4e4 fits float16 but not once B's scale (2.0) is folded in
    for dtype, bad in ((torch.float16, 1e5), (torch.float16, 4e4), (torch.float32, float("nan"))):
        shape, st = _stacks(capacity=2, rank=4, seed=3, dtype=dtype)
        before = [t.clone() for layer in st.A + st.B for t in layer.values()]
        mods = [{"q_proj": (torch.randn(4, shape.hidden), torch.randn(shape.heads * shape.head_dim, 4), 2.0),
                 "down_proj": (torch.randn(4, shape.intermediate), torch.randn(shape.hidden, 4), 2.0)}
                for _ in range(shape.layers)]
        mods[1]["down_proj"][1][3, 2] = bad
        with pytest.raises(AdapterError, match="layer 1 down_proj: .*not finite in " + str(dtype).removeprefix("torch.")):
            st.write(1, mods)
        after = [t for layer in st.A + st.B for t in layer.values()]
        assert all(torch.equal(x, y) for x, y in zip(before, after, strict=True))
        mods[1]["down_proj"][1][3, 2] = 1.0
        st.write(1, mods)  # the same adapter without the bad weight goes in
        assert torch.equal(st.B[1]["down_proj"][1][:4].float(), (mods[1]["down_proj"][1].T * 2.0).to(dtype).float())
