"""Continuous batching (no torch): which sequences run in the next step and how many tokens each feeds.

Owns: the waiting queue (interactive before batch, then oldest first) and the running set; a per-step
token budget shared by decodes (one token each) and prefill chunks (long prompts are fed in chunks);
admission against KV blocks, the sequence cap and adapter slots; preemption when blocks run out (the
newest, lowest-priority running sequence gives its blocks back and is recomputed later: never failed;
its full blocks stay in the prefix cache, so the recompute is usually a cache hit); dropping aborted
sequences at the next step. Does not own: tensors, sampling or delivering output.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Protocol

from tenfold.engine.kv_cache import BlockManager
from tenfold.engine.sequence import Sequence, Status
from tenfold.engine.types import AdapterError


class AdapterGate(Protocol):
    def acquire(self, digest: str) -> bool:
        """Pin ``digest`` in a slot if it is loaded (True); else start loading it and return False.
        Raises ``AdapterError`` if it cannot be loaded."""

    def release(self, digest: str) -> None: ...


class NoAdapters:
    """Gate for engines without adapters (tests): every request is a base-model request."""

    def acquire(self, digest: str) -> bool:
        raise AdapterError(f"adapter {digest}: this engine serves no adapters")

    def release(self, digest: str) -> None:
        return None


@dataclass
class ScheduledSeq:
    seq: Sequence
    num_tokens: int

    @property
    def samples(self) -> bool:
        """True when this chunk reaches the end of the known tokens, so a new token is sampled."""
        return self.seq.num_computed + self.num_tokens == self.seq.num_tokens


@dataclass
class StepPlan:
    scheduled: list[ScheduledSeq] = field(default_factory=list)
    preempted: list[Sequence] = field(default_factory=list)
    failed: list[tuple[Sequence, Exception]] = field(default_factory=list)
    dropped: list[Sequence] = field(default_factory=list)  # aborted by their clients

    @property
    def num_tokens(self) -> int:
        return sum(s.num_tokens for s in self.scheduled)


class Scheduler:
    def __init__(self, blocks: BlockManager, *, max_num_seqs: int, max_batched_tokens: int,
                 adapters: AdapterGate | None = None, max_background_tokens: int | None = None) -> None:
        if max_num_seqs < 1 or max_batched_tokens < 1:
            raise ValueError("max_num_seqs and max_batched_tokens must be >= 1")
        self.blocks = blocks
        self.max_num_seqs = max_num_seqs
        self.max_batched_tokens = max_batched_tokens
        # Tokens per step for batch-priority work: keeps steps short, so an interactive request arriving
        # mid-step waits little for its turn.
        self.max_background_tokens = max_background_tokens or max_batched_tokens
        self.adapters = adapters or NoAdapters()
        self.waiting: list[Sequence] = []  # sorted by sort_key
        self.running: list[Sequence] = []  # sorted by sort_key
        self.total_preemptions = 0

    # ---- queue ------------------------------------------------------------------------------
    def add(self, seq: Sequence) -> None:
        seq.status = Status.WAITING
        bisect.insort(self.waiting, seq, key=lambda s: s.sort_key)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def finish(self, seq: Sequence, reason: str) -> None:
        """Retire ``seq`` (finished, failed or aborted): release its blocks and adapter pin."""
        if seq in self.running:
            self.running.remove(seq)
            self._release(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)
            if seq.block_table:
                self.blocks.free(seq)
        seq.status = Status.FINISHED
        seq.finish_reason = reason

    # ---- one step ---------------------------------------------------------------------------
    def schedule(self) -> StepPlan:
        """Plan one step. Priority classes go in order (interactive first): each class's running sequences
        continue, then its waiting ones are admitted, so batch work only ever gets what interactive left."""
        plan = StepPlan()
        for seq in [s for s in self.running + self.waiting if s.aborted]:
            self.finish(seq, "abort")
            plan.dropped.append(seq)
        budget = self.max_batched_tokens
        for priority in sorted({s.priority for s in self.running + self.waiting}):
            if priority > 0 and self._interactive_pending(plan):
                break  # a prompt of interactive traffic is being filled: lower classes pause for this step
            class_budget = budget if priority == 0 else min(budget, self.max_background_tokens)
            left = self._continue_running(priority, class_budget, plan)
            if not plan.preempted:
                left = self._admit_waiting(priority, left, plan)
            budget -= class_budget - left
        return plan

    def _interactive_pending(self, plan: StepPlan) -> bool:
        """True when interactive work is waiting or prefilling, so batch work keeps out of its way (its
        time to first token is what a batch would otherwise slow down)."""
        return any(s.priority == 0 for s in self.waiting) or any(
            item.seq.priority == 0 and item.num_tokens > 1 for item in plan.scheduled)

    def _continue_running(self, priority: int, budget: int, plan: StepPlan) -> int:
        for seq in [s for s in self.running if s.priority == priority]:
            if budget <= 0:
                break
            if seq.status is not Status.RUNNING:
                continue  # preempted earlier in this loop
            n = min(seq.num_uncomputed, budget)
            while not self.blocks.allocate(seq, n):
                victim = self.running[-1]  # newest of the lowest priority: never one already scheduled
                self._preempt(victim, plan)
                if victim is seq:
                    break
            if seq.status is not Status.RUNNING:
                break
            plan.scheduled.append(ScheduledSeq(seq, n))
            budget -= n
        return budget

    def _admit_waiting(self, priority: int, budget: int, plan: StepPlan) -> int:
        for seq in [s for s in self.waiting if s.priority == priority]:
            if budget <= 0:
                break
            if len(self.running) >= self.max_num_seqs and not self._evict_lower(seq, plan):
                break
            n = self._admit(seq, budget, plan)
            if n is None:
                if plan.failed and plan.failed[-1][0] is seq:
                    continue
                if seq.adapter_digest is not None and seq.status is Status.WAITING and not seq.block_table:
                    continue  # its adapter is loading: later sequences may still run
                break
            plan.scheduled.append(ScheduledSeq(seq, n))
            budget -= n
        return budget

    def _admit(self, seq: Sequence, budget: int, plan: StepPlan) -> int | None:
        if seq.adapter_digest is not None:
            try:
                if not self.adapters.acquire(seq.adapter_digest):
                    return None
            except AdapterError as exc:
                self.waiting.remove(seq)
                seq.status = Status.FINISHED
                seq.finish_reason = "error"
                plan.failed.append((seq, exc))
                return None
        hit = self.blocks.match_prefix(seq)
        if seq.cached_tokens is None:
            seq.cached_tokens = hit
        n = min(seq.num_uncomputed, budget)
        while not self.blocks.allocate(seq, n):
            if not self._evict_lower(seq, plan):
                self.blocks.free(seq)
                if seq.adapter_digest is not None:
                    self.adapters.release(seq.adapter_digest)
                return None
        self.waiting.remove(seq)
        seq.status = Status.RUNNING
        bisect.insort(self.running, seq, key=lambda s: s.sort_key)
        return n

    def _evict_lower(self, seq: Sequence, plan: StepPlan) -> bool:
        """Preempt the newest running sequence of lower priority than ``seq`` (batch work yields to interactive)."""
        victim = self.running[-1] if self.running else None
        if victim is None or victim.priority <= seq.priority or any(v.seq is victim for v in plan.scheduled):
            return False
        self._preempt(victim, plan)
        return True

    def _preempt(self, seq: Sequence, plan: StepPlan) -> None:
        self.running.remove(seq)
        self._release(seq)
        seq.num_preemptions += 1
        self.total_preemptions += 1
        plan.preempted.append(seq)
        self.add(seq)

    def _release(self, seq: Sequence) -> None:
        self.blocks.free(seq)
        if seq.adapter_digest is not None:
            self.adapters.release(seq.adapter_digest)

    # ---- after the step ---------------------------------------------------------------------
    def complete(self, plan: StepPlan) -> None:
        """Record that the plan's tokens now have KV, and register newly full blocks in the prefix cache."""
        for item in plan.scheduled:
            item.seq.num_computed += item.num_tokens
            self.blocks.register_full_blocks(item.seq)
