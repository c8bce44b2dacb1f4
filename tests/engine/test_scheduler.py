"""Scheduler, block manager and adapter slots without tensors: fake sequences, fake adapter weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tenfold.engine.kv_cache import BlockManager, namespace_seed
from tenfold.engine.lora import AdapterStore
from tenfold.engine.scheduler import Scheduler
from tenfold.engine.sequence import Sequence, Status
from tenfold.engine.shapes import ModelShape
from tenfold.engine.types import AdapterError, AdapterRef, SamplingParams


def seq(n_prompt: int, *, ns: str = "base|o", priority: int = 0, adapter: str | None = None, first: int = 0) -> Sequence:
    digest, organization = ns.split("|")
    s = Sequence(request_id=f"r{first}", prompt_token_ids=list(range(first, first + n_prompt)),
                 sampling=SamplingParams(max_tokens=100), adapter_digest=adapter or (None if digest == "base" else digest),
                 organization=organization, priority=priority)
    s.hash_seed = namespace_seed(s.cache_namespace)
    return s


def run_step(s: Scheduler, plan) -> None:
    """What the engine does after a forward: mark tokens computed, append a token to sampling sequences."""
    sampling = [item.seq for item in plan.scheduled if item.samples]
    s.complete(plan)
    for q in sampling:
        q.output_token_ids.append(7)


# ---- block manager ----------------------------------------------------------------------------
def test_prefix_chain_hits_whole_blocks_and_leaves_the_last_token():
    bm = BlockManager(num_blocks=20, block_size=4)
    a = seq(10)
    assert bm.match_prefix(a) == 0 and bm.allocate(a, 10)
    a.num_computed = 10
    bm.register_full_blocks(a)  # blocks [0..3], [4..7] are full
    b = seq(10)
    assert bm.match_prefix(b) == 8 and b.block_table == a.block_table[:2]
    assert bm.blocks[a.block_table[0]].ref == 2
    exact = seq(8)  # fully cached prompt: the last block is recomputed so there are logits to sample from
    assert bm.match_prefix(exact) == 4


def test_namespaces_and_parents_are_confirmed_not_just_hashes():
    bm = BlockManager(num_blocks=20, block_size=4)
    a = seq(9, ns="ad1|org")
    bm.match_prefix(a)
    bm.allocate(a, 9)
    a.num_computed = 9
    bm.register_full_blocks(a)
    other_org = seq(9, ns="ad1|org2")
    assert bm.match_prefix(other_org) == 0
    # Forge a sequence whose chain seed collides with a's but whose namespace differs: still no hit.
    forged = seq(9, ns="evil|org")
    forged.hash_seed = a.hash_seed
    assert bm.match_prefix(forged) == 0
    assert bm.cached_block_ids("ad1|org") == set(a.block_table[:2])


def test_free_keeps_cached_blocks_until_lru_eviction():
    bm = BlockManager(num_blocks=5, block_size=2)  # 4 usable
    a = seq(4, first=100)
    bm.match_prefix(a)
    bm.allocate(a, 4)
    a.num_computed = 4
    bm.register_full_blocks(a)
    bm.free(a)
    assert bm.num_available() == 4 and bm.num_used() == 0
    b = seq(3, first=200)  # needs 2 blocks: taken from the 2 never-cached free blocks first
    bm.match_prefix(b)
    assert bm.allocate(b, 3)
    again = seq(5, first=100)
    assert bm.match_prefix(again) == 4  # a's blocks survived
    bm.free(again)
    c = seq(6, first=300)  # needs 3 blocks: 2 cached blocks of a are evicted, least recently used first
    bm.match_prefix(c)
    assert not bm.allocate(c, 8)
    assert bm.allocate(c, 4)
    assert bm.match_prefix(seq(5, first=100)) == 0


def test_double_free_is_an_error():
    bm = BlockManager(num_blocks=4, block_size=2)
    a = seq(2)
    bm.allocate(a, 2)
    table = list(a.block_table)
    bm.free(a)
    a.block_table = table
    with pytest.raises(RuntimeError, match="released"):
        bm.free(a)


# ---- scheduler ----------------------------------------------------------------------------------
def test_token_budget_mixes_decodes_with_chunked_prefill():
    s = Scheduler(BlockManager(100, 4), max_num_seqs=8, max_batched_tokens=10)
    short, long = seq(3, first=0), seq(25, first=500)
    s.add(short)
    s.add(long)
    plan = s.schedule()
    assert [(i.seq, i.num_tokens) for i in plan.scheduled] == [(short, 3), (long, 7)]
    assert plan.scheduled[0].samples and not plan.scheduled[1].samples
    run_step(s, plan)
    plan = s.schedule()  # short decodes one token, long continues its prompt in the rest of the budget
    assert [(i.seq, i.num_tokens) for i in plan.scheduled] == [(short, 1), (long, 9)]
    run_step(s, plan)
    plan = s.schedule()
    assert [(i.seq, i.num_tokens) for i in plan.scheduled] == [(short, 1), (long, 9)]
    assert plan.scheduled[1].samples  # 7 + 9 + 9 = 25: the prompt is done, a token is sampled


def test_out_of_blocks_preempts_the_newest_and_resumes_it_later():
    s = Scheduler(BlockManager(7, 4), max_num_seqs=8, max_batched_tokens=64)  # 6 usable blocks
    old, new = seq(8, first=0), seq(8, first=100)
    s.add(old)
    s.add(new)
    run_step(s, s.schedule())  # both prefilled: 2 + 2 blocks, then each holds 9 tokens
    for _ in range(4):
        run_step(s, s.schedule())  # 12 computed tokens each: 3 blocks each = all 6 blocks
    plan = s.schedule()  # old needs a 4th block: new is preempted, never failed
    assert plan.preempted == [new] and new.status is Status.WAITING and new.num_computed == 0
    assert [i.seq for i in plan.scheduled] == [old]
    s.finish(old, "stop")
    plan = s.schedule()
    assert [i.seq for i in plan.scheduled] == [new]
    assert new.num_computed >= 8  # its full blocks were still in the prefix cache
    assert plan.scheduled[0].num_tokens == new.num_tokens - new.num_computed


def test_batch_priority_waits_for_interactive_and_yields_its_blocks():
    s = Scheduler(BlockManager(5, 4), max_num_seqs=8, max_batched_tokens=64)  # 4 usable blocks
    batch = seq(12, priority=1, first=0)
    s.add(batch)
    run_step(s, s.schedule())
    interactive = seq(6, first=100)
    s.add(interactive)
    plan = s.schedule()  # the batch sequence decodes first (it is running); then interactive needs 2 blocks
    assert interactive in [i.seq for i in plan.scheduled]
    assert batch in plan.preempted
    queued_batch, queued_interactive = seq(4, priority=1, first=300), seq(4, first=400)
    s.add(queued_batch)
    s.add(queued_interactive)
    assert s.waiting.index(queued_interactive) < s.waiting.index(queued_batch)


def test_batch_pauses_while_an_interactive_prompt_is_filled():
    s = Scheduler(BlockManager(100, 4), max_num_seqs=8, max_batched_tokens=64)
    batch = seq(6, priority=1, first=0)
    s.add(batch)
    run_step(s, s.schedule())
    assert [i.seq for i in s.schedule().scheduled] == [batch]  # alone, batch work runs
    interactive = seq(10, first=100)
    s.add(interactive)
    plan = s.schedule()
    assert [i.seq for i in plan.scheduled] == [interactive] and not plan.preempted  # paused, keeps its blocks
    run_step(s, plan)
    plan = s.schedule()  # the prompt is in: both decode together
    assert {i.seq for i in plan.scheduled} == {interactive, batch}


def test_batch_work_gets_short_steps():
    s = Scheduler(BlockManager(100, 4), max_num_seqs=8, max_batched_tokens=64, max_background_tokens=8)
    big = seq(30, priority=1, first=0)
    s.add(big)
    assert [(i.seq, i.num_tokens) for i in s.schedule().scheduled] == [(big, 8)]


def test_aborted_sequences_are_dropped_and_their_blocks_freed():
    bm = BlockManager(50, 4)
    s = Scheduler(bm, max_num_seqs=8, max_batched_tokens=64)
    a, b = seq(9, first=0), seq(9, first=100)
    s.add(a)
    s.add(b)
    run_step(s, s.schedule())
    used = bm.num_used()
    a.aborted = True
    plan = s.schedule()
    assert plan.dropped == [a] and a.status is Status.FINISHED and a.finish_reason == "abort"
    assert [i.seq for i in plan.scheduled] == [b]
    assert bm.num_used() < used and a.block_table == []


def test_sequence_cap_limits_the_running_batch():
    s = Scheduler(BlockManager(100, 4), max_num_seqs=2, max_batched_tokens=64)
    seqs = [seq(3, first=i * 10) for i in range(3)]
    for q in seqs:
        s.add(q)
    plan = s.schedule()
    assert [i.seq for i in plan.scheduled] == seqs[:2] and s.waiting == [seqs[2]]


class FakeGate:
    def __init__(self, ready: set[str], bad: set[str] = frozenset()) -> None:
        self.ready, self.bad, self.pins = ready, bad, {}

    def acquire(self, digest: str) -> bool:
        if digest in self.bad:
            raise AdapterError(f"adapter {digest} is broken")
        if digest not in self.ready:
            return False
        self.pins[digest] = self.pins.get(digest, 0) + 1
        return True

    def release(self, digest: str) -> None:
        self.pins[digest] -= 1


def test_loading_adapter_does_not_block_others_and_broken_adapter_fails_its_request_only():
    gate = FakeGate(ready={"a"}, bad={"bad"})
    s = Scheduler(BlockManager(100, 4), max_num_seqs=8, max_batched_tokens=64, adapters=gate)
    loading, broken, ready = seq(3, adapter="slow", first=0), seq(3, adapter="bad", first=10), seq(3, adapter="a", first=20)
    for q in (loading, broken, ready):
        s.add(q)
    plan = s.schedule()
    assert [i.seq for i in plan.scheduled] == [ready]
    assert [q for q, _ in plan.failed] == [broken] and "broken" in str(plan.failed[0][1])
    assert s.waiting == [loading]
    run_step(s, plan)
    gate.ready.add("slow")
    assert loading in [i.seq for i in s.schedule().scheduled]
    s.finish(ready, "stop")
    assert gate.pins == {"a": 0, "slow": 1}


# ---- adapter slots ------------------------------------------------------------------------------
class FakeWeights:
    """An adapter with no modules: exercises slot bookkeeping without real weights."""

    def __init__(self, digest: str) -> None:
        self.digest, self.max_rank, self.modules, self.fits = digest, 0, [], None


def slot_store(slots: int, host: int) -> AdapterStore:
    shape = ModelShape(vocab_size=10, hidden=4, layers=1, heads=1, kv_heads=1, head_dim=4, intermediate=8, eps=1e-5,
                       max_context=32, tied=True)
    store = AdapterStore(shape=shape, base_name="fake", model_path=Path("/nonexistent"), num_slots=slots,
                         host_capacity=host, dtype=torch.float32, device=torch.device("cpu"))
    return store


def test_slots_pin_while_running_and_evict_idle_least_recently_used():
    store = slot_store(slots=2, host=3)
    for d in "abc":
        store.register(AdapterRef(digest=d, path=Path("/nonexistent")))
        store._host[d] = FakeWeights(d)
    assert store.acquire("a") and store.acquire("b")
    assert not store.acquire("c")  # both slots pinned: c waits
    store.release("a")
    assert store.acquire("c")  # a was idle: evicted from its slot, kept in host memory
    assert store.resident() == ["b", "c"] and "a" in store.in_host()
    assert store.slot_of("c") == 0  # a's slot was reused
    assert store.stacks.capacity == 2
    store.release("b")
    store.release("c")
    assert store.acquire("a") and store.resident() == ["c", "a"]


def test_unknown_and_unloadable_adapters_raise():
    store = slot_store(slots=1, host=1)
    with pytest.raises(AdapterError, match="never registered"):
        store.acquire("ghost")
    store.register(AdapterRef(digest="gone", path=Path("/nonexistent/adapter")))
    assert not store.acquire("gone")  # starts a background load, which fails
    store._pool.shutdown(wait=True)
    with pytest.raises(AdapterError, match="does not exist"):
        store.acquire("gone")
