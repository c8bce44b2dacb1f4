"""The only code that builds tensors for a step: flattens the scheduled sequences' tokens, positions and
KV slots, lays out attention (decode rows vs prefill chunks) and LoRA segments, runs the model and samples.

Owns: the KV tensors, the row order (rows grouped by adapter so each adapter's delta is one segment), and
turning a ``StepPlan`` into sampled tokens. Does not own: who is scheduled (``scheduler``), block
accounting (``kv_cache``), or what a token means for its request (``async_engine``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from tenfold.engine.kernels import decode_kernel_available, lora_kernel_available
from tenfold.engine.layers import AttentionMeta
from tenfold.engine.lora import AdapterStore
from tenfold.engine.lora_stacks import LoraPlan, kernel_pieces
from tenfold.engine.model import LlamaModel
from tenfold.engine.sampler import RowSampling, sample_rows
from tenfold.engine.scheduler import ScheduledSeq, StepPlan
from tenfold.engine.types import TokenLogprob


@dataclass
class Sampled:
    item: ScheduledSeq
    token_id: int
    logprob: TokenLogprob | None


class ModelRunner:
    def __init__(self, model: LlamaModel, *, num_blocks: int, block_size: int, adapters: AdapterStore | None) -> None:
        self.model = model
        self.block_size = block_size
        self.adapters = adapters
        self.kv = model.allocate_kv(num_blocks, block_size)
        self.device = model.device
        self.decode_kernel = decode_kernel_available(model.device, model.dtype, model.compute_dtype)
        self.lora_kernel = lora_kernel_available(model.device, model.dtype,
                                                 adapters.stacks.dtype if adapters is not None else None)

    def execute(self, plan: StepPlan, interrupt: Callable[[], bool] | None = None) -> list[Sampled]:
        """Run one step; ``interrupt`` (asked between layers) may stop it with ``StepInterrupted``."""
        # Row order: decode rows with an adapter (by slot), other decode rows, then prefill chunks. Decode
        # rows are then one contiguous range for attention and for the batched LoRA delta.
        def order(it: ScheduledSeq) -> tuple[bool, bool, int]:
            digest = it.seq.adapter_digest
            return (it.num_tokens != 1, digest is None, self.adapters.slot_of(digest) if digest is not None else 0)

        items = sorted(plan.scheduled, key=order)
        bs = self.block_size
        ids: list[int] = []
        positions: list[int] = []
        slots: list[int] = []
        decode_rows: list[int] = []
        decode_tables: list[list[int]] = []
        decode_lens: list[int] = []
        prefills: list[tuple[int, int, list[int], int]] = []
        logit_rows: list[int] = []
        sampled_items: list[ScheduledSeq] = []
        lora_decode: list[tuple[int, int]] = []  # (row, slot)
        lora_segments: list[tuple[int, int, int]] = []  # (start row, rows, slot)
        row = 0
        for it in items:
            seq, n = it.seq, it.num_tokens
            start = seq.num_computed
            ids.extend(seq.all_token_ids[start : start + n])
            table = seq.block_table
            for p in range(start, start + n):
                positions.append(p)
                slots.append(table[p // bs] * bs + p % bs)
            used = -(-(start + n) // bs)
            if n == 1:
                decode_rows.append(row)
                decode_tables.append(table[:used])
                decode_lens.append(start + 1)
            else:
                prefills.append((row, n, table[:used], start))
            if it.samples:
                logit_rows.append(row + n - 1)
                sampled_items.append(it)
            if seq.adapter_digest is not None:
                slot = self.adapters.slot_of(seq.adapter_digest)
                if n == 1:
                    lora_decode.append((row, slot))
                else:
                    lora_segments.append((row, n, slot))
            row += n
        if decode_rows and decode_rows[-1] != len(decode_rows) - 1:
            raise RuntimeError("decode rows must come first in a step")  # the layout layers rely on
        meta = self._attention_meta(slots, decode_rows, decode_tables, decode_lens, prefills)
        lora = self._lora_plan(lora_decode, lora_segments) if (lora_decode or lora_segments) else None
        dev = self.device
        logits = self.model.forward(torch.tensor(ids, dtype=torch.long, device=dev),
                                    torch.tensor(positions, dtype=torch.long, device=dev), meta, self.kv, lora,
                                    torch.tensor(logit_rows, dtype=torch.long, device=dev), interrupt)
        if not sampled_items:
            return []
        rows = [RowSampling(it.seq.sampling, it.seq.state.generator, it.seq.output_token_ids,
                            getattr(it.seq.state, "matcher", None)) for it in sampled_items]
        picks = sample_rows(logits.cpu(), rows)
        return [Sampled(it, tok, lp) for it, (tok, lp) in zip(sampled_items, picks)]

    def _lora_plan(self, decode: list[tuple[int, int]], segments: list[tuple[int, int, int]]) -> LoraPlan:
        stacks = self.adapters.stacks
        if self.lora_kernel:
            # Decode rows come sorted by slot: each run of one slot's rows is a segment. Every segment goes to
            # the C kernel (weights read in place; rank-16 products run faster there than as matmuls), cut
            # into pieces of at most KERNEL_ROWS rows that its threads share.
            runs: list[list[int]] = []
            for row, slot in decode:
                if runs and runs[-1][2] == slot and runs[-1][0] + runs[-1][1] == row:
                    runs[-1][1] += 1
                else:
                    runs.append([row, 1, slot])
            pieces = kernel_pieces([(r[0], r[1], r[2]) for r in runs] + segments)
            return LoraPlan(stacks=stacks, kernel_segments=torch.tensor(pieces, dtype=torch.long))
        plan = LoraPlan(stacks=stacks, segments=tuple(segments))
        if decode:
            dev = self.device
            used = sorted({slot for _, slot in decode})
            # Many slots in use: multiply against the whole stack (no copy); few: gather just those slots.
            full = 2 * len(used) >= stacks.capacity
            pos_of = {slot: (slot if full else i) for i, slot in enumerate(used)}
            seen: dict[int, int] = {}
            pos, within = [], []
            for _, slot in decode:
                pos.append(pos_of[slot])
                within.append(seen.get(slot, 0))
                seen[slot] = within[-1] + 1
            plan.decode_rows = torch.tensor([r for r, _ in decode], dtype=torch.long, device=dev)
            plan.decode_pos = torch.tensor(pos, dtype=torch.long, device=dev)
            plan.decode_within = torch.tensor(within, dtype=torch.long, device=dev)
            plan.decode_slots = None if full else torch.tensor(used, dtype=torch.long, device=dev)
            plan.decode_width = max(seen.values())
        return plan

    def _attention_meta(self, slots, decode_rows, decode_tables, decode_lens, prefills) -> AttentionMeta:
        dev, bs = self.device, self.block_size
        meta = AttentionMeta(slot_mapping=torch.tensor(slots, dtype=torch.long, device=dev), decode_rows=None,
                             decode_blocks=None, decode_lens=None, decode_mask=None, prefills=[])
        if decode_rows:
            width = max(len(t) for t in decode_tables)
            padded = [t + [0] * (width - len(t)) for t in decode_tables]
            table = torch.tensor(padded, dtype=torch.long)
            lens = torch.tensor(decode_lens, dtype=torch.long)
            meta.decode_rows = torch.tensor(decode_rows, dtype=torch.long, device=dev)
            meta.decode_blocks = table.to(dev)
            meta.decode_lens = lens.to(dev)
            if not self.decode_kernel:
                mask = torch.arange(width * bs).unsqueeze(0) < lens.unsqueeze(1)
                meta.decode_mask = mask[:, None, None, :].to(dev)
        for row, n, table, start in prefills:
            total = start + n
            q_pos = torch.arange(start, total).unsqueeze(1)
            mask = torch.arange(total).unsqueeze(0) <= q_pos  # [n, total], causal with the cached offset
            meta.prefills.append((row, n, torch.tensor(table, dtype=torch.long, device=dev), mask.to(dev)))
        return meta
