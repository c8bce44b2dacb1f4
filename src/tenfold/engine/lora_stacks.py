"""Adapter slots as stacked tensors, and the batched LoRA delta computed from them.

Owns: per layer, one stacked shrink matrix per fused group (``A[g]``: [capacity, in, modules*R], q/k/v
and gate/up shrink together) and one stacked expand matrix per module (``B[m]``: [capacity, R, out]), in
the ``x @ W`` orientation that batched matmul runs fastest on; growing capacity and rank (lower ranks are
zero-padded); and ``add_lora``, which adds each row's own adapter delta to a base matmul's output. On CPU
float32 with the C extension every segment of rows sharing a slot (decode rows, prefill chunks cut into
pieces of at most ``KERNEL_ROWS``) goes to its register-blocked kernel, which reads the slot's weights in
place; elsewhere (GPU, no extension) decode rows take one batched matmul over the slots they use and
multi-token segments plain matmuls on their slot's views. The base matmul is shared by all rows.
Does not own: which adapter has which slot (``lora.AdapterStore``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from tenfold.engine.kernels import STACK_KINDS
from tenfold.engine.kernels import ext as _cpu_kernels
from tenfold.engine.layers import empty_large
from tenfold.engine.shapes import LORA_GROUPS, ModelShape
from tenfold.engine.types import AdapterError, EngineError

GROUP_MODULES: dict[str, list[str]] = {}
for _module, (_group, _index) in sorted(LORA_GROUPS.items(), key=lambda kv: kv[1]):
    GROUP_MODULES.setdefault(_group, []).append(_module)


class LoraStacks:
    def __init__(self, shape: ModelShape, *, dtype: torch.dtype, device: torch.device) -> None:
        self.shape, self.dtype, self.device = shape, dtype, device
        self.capacity = 0
        self.rank = 0
        self.A: list[dict[str, torch.Tensor]] = []
        self.B: list[dict[str, torch.Tensor]] = []
        self.offsets = {g: _offsets(shape.group_out(g)) for g in GROUP_MODULES}
        self._kernel: dict[tuple[int, str], KernelStack] = {}

    def shapes(self, capacity: int, rank: int) -> list[tuple[int, int, int]]:
        """The stacks' shapes at ``capacity`` x ``rank``, in buffer order (per layer and group: A, then each B)."""
        s, out = self.shape, []
        for _layer in range(s.layers):
            for g, mods in GROUP_MODULES.items():
                out.append((capacity, s.group_in(g), len(mods) * rank))
                out.extend((capacity, rank, o) for o in s.group_out(g))
        return out

    def numel(self, capacity: int, rank: int) -> int:
        return sum(math.prod(x) for x in self.shapes(capacity, rank))

    def ensure(self, capacity: int, rank: int, *, zeroed: torch.Tensor | None = None) -> None:
        """Grow to at least ``capacity`` slots of rank ``rank`` (existing slots are kept). Every stack is a
        view into one buffer, so the whole set is huge-page backed (see ``empty_large``); ``zeroed`` is an
        already zero-filled buffer of ``numel(capacity, rank)`` elements to use (prepared off this thread)."""
        if capacity <= self.capacity and rank <= self.rank:
            return
        capacity, rank = max(capacity, self.capacity), max(rank, self.rank)
        s, old_cap, old_rank = self.shape, self.capacity, self.rank
        shapes = self.shapes(capacity, rank)
        total = sum(math.prod(x) for x in shapes)
        if zeroed is not None and (zeroed.numel() != total or zeroed.dtype != self.dtype):
            raise ValueError(f"a prepared buffer of {zeroed.numel()} {zeroed.dtype} does not fit {total} {self.dtype}")
        buffer = zeroed if zeroed is not None else empty_large((total,), dtype=self.dtype, device=self.device)
        fresh = zeroed is None  # an empty buffer: zero what old slots do not overwrite
        views = iter(buffer.split([math.prod(x) for x in shapes]))
        new_a, new_b = [], []
        for layer in range(s.layers):
            a_layer, b_layer = {}, {}
            for g, mods in GROUP_MODULES.items():
                a = next(views).view(capacity, s.group_in(g), len(mods) * rank)
                if fresh:
                    a[old_cap:].zero_()
                if old_cap:
                    old = self.A[layer][g]
                    if rank == old_rank:
                        a[:old_cap].copy_(old)
                    else:  # each module's columns move to its new offset, zero-padded to the new rank
                        if fresh:
                            a[:old_cap].zero_()
                        for i in range(len(mods)):
                            a[:old_cap, :, i * rank : i * rank + old_rank] = old[:, :, i * old_rank : (i + 1) * old_rank]
                a_layer[g] = a
                for i, m in enumerate(mods):
                    b = next(views).view(capacity, rank, s.group_out(g)[i])
                    if fresh:
                        b[old_cap:].zero_()
                        b[:old_cap, old_rank:].zero_()
                    if old_cap:
                        b[:old_cap, :old_rank].copy_(self.B[layer][m])
                    b_layer[m] = b
            new_a.append(a_layer)
            new_b.append(b_layer)
        self.A, self.B, self.capacity, self.rank = new_a, new_b, capacity, rank
        self._kernel.clear()

    def kernel_stack(self, layer: int, group: str) -> KernelStack:
        """The C kernel's view of one layer's group (pointers into the current buffer; rebuilt after growth)."""
        k = self._kernel.get((layer, group))
        if k is None:
            k = self._kernel[(layer, group)] = kernel_stack(
                self.A[layer][group], [self.B[layer][m] for m in GROUP_MODULES[group]], self.offsets[group])
        return k

    def write(self, slot: int, modules: list[dict[str, tuple[torch.Tensor, torch.Tensor, float]]], *,
              checked: bool = False) -> None:
        """Copy one adapter's per-layer ``{module: (A [r, in], B [out, r], scale)}`` into ``slot``, transposed,
        with the scale folded into B and in the stacks' dtype (zeros elsewhere). Engine thread only.

        The weights are checked first (``check``; ``checked=True``: the caller already did), so the slot is
        left as it was when that raises. Each weight goes into the stack in one copy that transposes and
        converts (about half the time of building the converted tensors first)."""
        if not checked:
            self.check(modules)
        R = self.rank
        for layer, mods in enumerate(modules):
            for g, names in GROUP_MODULES.items():
                a = self.A[layer][g][slot]
                a.zero_()
                for i, m in enumerate(names):
                    b = self.B[layer][m][slot]
                    b.zero_()
                    if m in mods:
                        a_in, b_in, scale = mods[m]
                        r = a_in.shape[0]
                        a[:, i * R : i * R + r].copy_(a_in.T)
                        if b_in.dtype == torch.float32 and self.dtype == torch.float32:
                            torch.mul(b_in.T, scale, out=b[:r])
                        else:  # scale in float32, then one rounding to the stacks' dtype
                            b[:r].copy_(b_in.T.to(torch.float32) * scale)

    def check(self, modules: list[dict[str, tuple[torch.Tensor, torch.Tensor, float]]]) -> None:
        """Raise ``AdapterError`` if one adapter's weights (per layer ``{module: (A [r, in], B [out, r],
        scale)}``) hold a value that is not finite, or not finite once scaled and converted to the stacks'
        dtype (beyond ±65504 in float16). Engine thread only.

        One pass: the largest magnitude of every tensor (``amax``: NaN stays NaN; ~3 ms for a 20 MB adapter,
        where converting every weight took ~65 ms), scaled and converted like the weights. Rounding is
        monotonic, so a tensor converts to finite values exactly when its largest magnitude does. Only when
        that finds a problem are the modules walked one by one, to name the first bad one."""
        tensors, scales = [], []
        for mods in modules:
            for a_in, b_in, scale in mods.values():
                tensors += [a_in, b_in]
                scales += [1.0, scale]
        if not tensors:
            return
        peaks = torch.stack([t.abs().amax().to(torch.float32) for t in tensors])
        if bool(torch.isfinite((peaks * torch.tensor(scales)).to(self.dtype)).all()):
            return
        dtype = str(self.dtype).removeprefix("torch.")
        for layer, mods in enumerate(modules):
            for m, (a_in, b_in, scale) in mods.items():
                for w, sc in ((a_in, 1.0), (b_in, scale)):
                    if not bool(torch.isfinite((w.to(torch.float32) * sc).to(self.dtype)).all()):
                        raise AdapterError(
                            f"layer {layer} {m}: LoRA weights that are not finite in {dtype}"
                            + (" (beyond ±65504); serve with lora_dtype bfloat16 or float32" if self.dtype == torch.float16
                               else "; the adapter file is corrupt or its training diverged"))

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for layer in self.A + self.B for t in layer.values())


def _offsets(outs: list[int]) -> list[int]:
    acc, offs = 0, []
    for o in outs:
        offs.append(acc)
        acc += o
    return offs


@dataclass
class LoraPlan:
    """Which rows use which slot in one step (built by the runner)."""

    stacks: LoraStacks
    decode_rows: torch.Tensor | None = None  # [Dn] single-token rows with an adapter: rows 0..Dn-1
    decode_pos: torch.Tensor | None = None  # [Dn] index into the slots used (or the slot itself when full)
    decode_within: torch.Tensor | None = None  # [Dn] position among rows sharing that slot
    decode_slots: torch.Tensor | None = None  # slots used, gathered; None: use the whole stack
    decode_width: int = 1  # most rows sharing one slot
    segments: tuple[tuple[int, int, int], ...] = ()  # (start row, rows, slot) of multi-token chunks
    kernel_segments: torch.Tensor | None = None  # [S, 3] int64 (start, rows <= KERNEL_ROWS, slot): the C kernel

    def __post_init__(self) -> None:
        if self.kernel_segments is not None:
            _check_segments(self.kernel_segments)


KERNEL_ROWS = 16  # the C kernel's most rows per segment (LORA_MAX_ROWS in _cpu_kernels.c)


def kernel_pieces(segments: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """``(start row, rows, slot)`` segments cut into pieces of at most ``KERNEL_ROWS`` rows, in order: the
    C kernel spreads pieces over its threads, so one long prefill chunk still uses every core."""
    return [(start + i, min(KERNEL_ROWS, rows - i), slot)
            for start, rows, slot in segments for i in range(0, rows, KERNEL_ROWS)]


def add_lora(y: torch.Tensor, x: torch.Tensor, plan: LoraPlan, layer: int, group: str) -> None:
    """``y[row] += x[row] @ A[slot] @ B[slot]`` for every adapter row, in place."""
    st = plan.stacks
    a_all = st.A[layer][group]
    mods = GROUP_MODULES[group]
    offs = st.offsets[group]
    R = st.rank
    if plan.kernel_segments is not None:
        run_kernel(y, x, plan.kernel_segments, st.kernel_stack(layer, group))
    if plan.decode_rows is not None:
        a = a_all if plan.decode_slots is None else a_all.index_select(0, plan.decode_slots)
        a = a.to(x.dtype)
        xp = x.new_zeros(a.shape[0], plan.decode_width, x.shape[1])
        dn = plan.decode_rows.shape[0]
        xp[plan.decode_pos, plan.decode_within] = x[:dn]
        h = torch.bmm(xp, a)  # [slots, width, modules*R]
        for i, m in enumerate(mods):
            b_all = st.B[layer][m]
            b = (b_all if plan.decode_slots is None else b_all.index_select(0, plan.decode_slots)).to(x.dtype)
            out = torch.bmm(h[:, :, i * R : (i + 1) * R], b)  # [slots, width, out_m]
            y[:dn, offs[i] : offs[i] + out.shape[2]] += out[plan.decode_pos, plan.decode_within]
    for start, rows, slot in plan.segments:
        h = x[start : start + rows] @ a_all[slot].to(x.dtype)
        for i, m in enumerate(mods):
            b = st.B[layer][m][slot].to(x.dtype)
            y[start : start + rows, offs[i] : offs[i] + b.shape[1]].addmm_(h[:, i * R : (i + 1) * R], b)


@dataclass(frozen=True)
class KernelStack:
    """One fused group's stacks as the C kernel takes them (checked once, when made)."""

    a_ptr: int
    capacity: int
    in_dim: int
    a_cols: int
    rank: int
    mods: tuple[tuple[int, int, int], ...]  # (B data pointer, out columns, column offset in y) per module
    width: int  # columns of y the group writes up to
    kind: int  # STACK_KINDS


def kernel_stack(a_stack: torch.Tensor, b_stacks: list[torch.Tensor], offsets: list[int]) -> KernelStack:
    cap, in_dim, a_cols = a_stack.shape
    rank = b_stacks[0].shape[1]
    kind = STACK_KINDS.get(a_stack.dtype)
    if (kind is None or any(t.dtype != a_stack.dtype for t in b_stacks)
            or any(t.device.type != "cpu" for t in (a_stack, *b_stacks))
            or not a_stack.is_contiguous() or a_cols != rank * len(b_stacks)
            or any(not b.is_contiguous() or b.shape[:2] != (cap, rank) for b in b_stacks)):
        raise EngineError("lora kernel: slot stacks of the wrong shape, dtype, device or layout")
    mods = tuple((b.data_ptr(), b.shape[2], off) for b, off in zip(b_stacks, offsets))
    return KernelStack(a_stack.data_ptr(), cap, in_dim, a_cols, rank, mods,
                       max(off + b.shape[2] for b, off in zip(b_stacks, offsets)), kind)


def _check_segments(segments: torch.Tensor) -> None:
    if (segments.dtype != torch.long or not segments.is_contiguous() or segments.dim() != 2
            or segments.shape[1] != 3 or segments.device.type != "cpu"):
        raise EngineError("lora kernel: segments must be a contiguous CPU int64 tensor of [start, rows, slot] rows")


def run_kernel(y: torch.Tensor, x: torch.Tensor, segments: torch.Tensor, k: KernelStack) -> None:
    """The C kernel's delta into ``y`` (segments already checked: ``_check_segments``). Per call this checks
    only ``y`` and ``x``, which change every step: a decode step makes one call per layer and group."""
    if (y.dtype != torch.float32 or x.dtype != torch.float32 or y.device.type != "cpu" or x.device.type != "cpu"
            or y.dim() != 2 or x.dim() != 2 or y.stride(1) != 1 or x.stride(1) != 1 or x.shape[0] != y.shape[0]
            or x.shape[1] != k.in_dim or y.shape[1] < k.width):
        raise EngineError("lora kernel: activations of the wrong shape, dtype, device or layout")
    _cpu_kernels.lora_segments(y.data_ptr(), y.stride(0), x.data_ptr(), x.stride(0), y.shape[0], k.in_dim,
                               segments.data_ptr(), segments.shape[0], k.a_ptr, k.capacity, k.a_cols, k.rank, k.mods,
                               torch.get_num_threads(), k.kind)


def lora_kernel_segments(y: torch.Tensor, x: torch.Tensor, segments: torch.Tensor, a_stack: torch.Tensor,
                         b_stacks: list[torch.Tensor], offsets: list[int]) -> None:
    """The C kernel's LoRA delta for segments of at most ``KERNEL_ROWS`` rows; shapes, dtypes and layouts
    are checked here (EngineError), rows and slots by the kernel (ValueError)."""
    _check_segments(segments)
    run_kernel(y, x, segments, kernel_stack(a_stack, b_stacks, offsets))
