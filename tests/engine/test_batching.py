"""Continuous batching behaviour on the tiny model: batch-composition independence (greedy and seeded
sampling), chunked prefill, preemption under KV pressure, back-pressure, cancellation freeing blocks,
sampling features (top_k, penalties, stop token ids, logprobs) and metrics."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import generate_latest

from tenfold.engine.types import EngineOverloaded, GenerationRequest, SamplingParams

from ._helpers import collect, ids_of, run_with_engine

PROMPTS = [list(range(100, 100 + n)) for n in (5, 23, 40, 61)]


async def _together(engine, specs):
    return await asyncio.gather(*(collect(engine, p, ad, rid=f"t{i}", **kw) for i, (p, ad, kw) in enumerate(specs)))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])  # the promise holds in the 16-bit format too
def test_seeded_sampling_and_greedy_do_not_depend_on_the_batch(tiny_path, adapter_a, adapter_b, dtype):
    specs = [(PROMPTS[0], None, dict(max_tokens=10, temperature=0.8, seed=11)),
             (PROMPTS[1], adapter_a, dict(max_tokens=10, temperature=1.2, top_p=0.9, seed=12)),
             (PROMPTS[2], adapter_b, dict(max_tokens=10, temperature=0)),
             (PROMPTS[3], adapter_a, dict(max_tokens=10, temperature=0.7, top_k=20, seed=13))]

    async def body(engine):
        alone = [ids_of(await collect(engine, p, ad, **kw)) for p, ad, kw in specs]
        together = [ids_of(d) for d in await _together(engine, specs)]
        return alone, together

    alone, together = run_with_engine(tiny_path, body, dtype=dtype)
    assert together == alone


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_chunked_prefill_and_preemption_give_the_same_tokens(tiny_path, dtype):
    specs = [(p, None, dict(max_tokens=24, temperature=0)) for p in PROMPTS]

    async def body(engine):
        return [ids_of(d) for d in await _together(engine, specs)], engine.scheduler.total_preemptions

    roomy, _ = run_with_engine(tiny_path, body, dtype=dtype)
    # 7-token steps chunk every prompt; 32 blocks of 4 tokens cannot hold all four at once (512 bytes per token
    # in float32, 256 in a bfloat16 cache).
    per_token = 512 if dtype == "float32" else 256
    tight, preemptions = run_with_engine(tiny_path, body, max_batched_tokens=7, block_size=4,
                                         kv_cache_bytes=33 * 4 * per_token, dtype=dtype)
    assert tight == roomy
    assert preemptions > 0


def test_full_queue_is_refused_with_retry_after(tiny_path):
    async def body(engine):
        streams = [engine.generate(GenerationRequest(f"q{i}", [5, 6], SamplingParams(max_tokens=200))) for i in range(2)]
        with pytest.raises(EngineOverloaded) as info:
            engine.generate(GenerationRequest("over", [5, 6], SamplingParams(max_tokens=2)))
        for s in streams:
            await s.aclose()
        return info.value.retry_after

    assert run_with_engine(tiny_path, body, max_waiting=2) > 0


def test_cancel_frees_blocks_at_the_next_step(tiny_path):
    async def body(engine):
        stream = engine.generate(GenerationRequest("c", list(range(50, 90)), SamplingParams(max_tokens=1000)))
        await stream.__anext__()
        held = engine.blocks.num_used()
        await stream.aclose()
        for _ in range(100):
            if engine.blocks.num_used() == 0:
                break
            await asyncio.sleep(0.01)
        return held, engine.blocks.num_used(), len(engine.scheduler.running)

    held, after, running = run_with_engine(tiny_path, body)
    assert held > 0 and after == 0 and running == 0


def test_top_k_penalties_stop_token_ids_and_logprobs(tiny_path):
    prompt = PROMPTS[1]

    async def body(engine):
        greedy = await collect(engine, prompt, max_tokens=12, temperature=0)
        top1 = await collect(engine, prompt, max_tokens=12, temperature=1.5, top_k=1, seed=1)
        repeat = await collect(engine, prompt, max_tokens=30, temperature=0, frequency_penalty=2.0,
                               presence_penalty=2.0)
        stop_at = ids_of(greedy)[3]
        stopped = await collect(engine, prompt, max_tokens=12, temperature=0, stop_token_ids=(stop_at,))
        lp = await collect(engine, prompt, max_tokens=4, temperature=0, logprobs=3)
        return greedy, top1, repeat, stop_at, stopped, lp

    greedy, top1, repeat, stop_at, stopped, lp = run_with_engine(tiny_path, body)
    assert ids_of(top1) == ids_of(greedy)  # top_k=1 is greedy whatever the temperature
    counts = {t: ids_of(repeat).count(t) for t in ids_of(repeat)}
    assert max(counts.values()) <= 2  # penalties push away from repeating
    assert ids_of(stopped) == ids_of(greedy)[: ids_of(greedy).index(stop_at) + 1]
    assert stopped[-1].finish_reason == "stop"
    entries = [e for d in lp for e in (d.logprobs or [])]
    assert [e.token_id for e in entries] == ids_of(lp)
    for e in entries:
        assert len(e.top) == 3 and e.top[0][0] == e.token_id  # greedy picks the most likely token
        assert e.logprob <= 0 and abs(e.logprob - e.top[0][1]) < 1e-6


def test_metrics_report_load_cache_hits_and_tokens(tiny_path):
    async def body(engine):
        await collect(engine, PROMPTS[2], max_tokens=3, organization="org-m")
        await collect(engine, PROMPTS[2], max_tokens=3, organization="org-m")
        return generate_latest().decode()

    text = run_with_engine(tiny_path, body)
    assert 'tenfold_engine_prefix_cache_hit_tokens_total{adapter="base",base_model="tiny-random-llama",' \
           'organization="org-m"} 32.0' in text
    assert 'tenfold_engine_generation_tokens_total{adapter="base",base_model="tiny-random-llama",' \
           'organization="org-m"} 6.0' in text
    for name in ("running_sequences", "waiting_sequences", "kv_blocks_used", "kv_blocks_total", "tokens_per_second"):
        assert f"tenfold_engine_{name}" in text


def test_mixed_ranks_and_target_modules_in_one_batch(tiny_path, adapter_factory):
    """Rank 4 all-linear, rank 8 attention-only, rank 16 q/v + down: padded into one stack, each row exact."""
    adapters = [adapter_factory("mix-r4", seed=31, r=4),
                adapter_factory("mix-r8", seed=32, r=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]),
                adapter_factory("mix-r16", seed=33, r=16, target_modules=["q_proj", "v_proj", "down_proj"]),
                None]
    specs = [(PROMPTS[i % 4], ad, dict(max_tokens=8, temperature=0)) for i, ad in enumerate(adapters * 2)]

    async def body(engine):
        alone = [ids_of(await collect(engine, p, ad, **kw)) for p, ad, kw in specs]
        together = [ids_of(d) for d in await _together(engine, specs)]
        return alone, together, engine.adapters.stacks.rank

    alone, together, rank = run_with_engine(tiny_path, body)
    assert together == alone and rank == 16
    assert len({tuple(a) for a in alone[:4]}) == 4  # every adapter changes the output


def test_batch_steps_yield_between_layers_to_interactive_work_and_lose_nothing(tiny_path, adapter_a):
    """A step of only batch-priority work stops between layers when interactive work arrives (here: the
    arrival flag is raised during the batch request's first three steps, prefill chunks and decodes) and
    runs again later: the batch request's tokens are those of an uninterrupted run, and interactive
    requests sent meanwhile complete."""
    prompt = list(range(200, 260))  # several prefill chunks at max_batched_tokens=16
    sampling = dict(max_tokens=20, temperature=0.9, seed=5, priority=1)

    from tenfold.engine.model import StepInterrupted

    async def body(engine):
        alone = ids_of(await collect(engine, prompt, adapter_a, rid="alone", **sampling))
        execute, seen = engine.runner.execute, {"background": 0, "interrupted": 0, "stopped": 0}

        def arrivals(plan, interrupt=None):
            if interrupt is not None:  # a batch-only step
                seen["background"] += 1
                if seen["interrupted"] < 3:
                    seen["interrupted"] += 1
                    engine._interactive.set()  # interactive work arrives while this step runs
            try:
                return execute(plan, interrupt)
            except StepInterrupted:
                seen["stopped"] += 1
                raise

        engine.runner.execute = arrivals
        before = engine.metrics.interrupted._value.get()
        batch = asyncio.ensure_future(collect(engine, prompt, adapter_a, rid="batch", **sampling))
        chats = [ids_of(await collect(engine, [5, 6, 7], None, rid=f"chat{i}", max_tokens=4, temperature=0))
                 for i in range(2)]
        interrupted = ids_of(await batch)
        return alone, interrupted, chats, engine.metrics.interrupted._value.get() - before, seen

    alone, interrupted, chats, counted, seen = run_with_engine(tiny_path, body, max_batched_tokens=16)
    # the three forced arrivals each stop a step; a chat arriving during a batch step really stops one too
    assert seen["interrupted"] == 3 and seen["stopped"] >= 3 and counted == seen["stopped"]
    assert interrupted == alone
    assert all(len(c) == 4 for c in chats)


def test_an_interrupted_step_changes_nothing(tiny_path, adapter_a):
    """Runner level: a step stopped between layers (KV of its first layers already written) and run again
    gives the logits of a step that was never stopped."""
    import torch

    from tenfold.engine.kv_cache import BlockManager, namespace_seed
    from tenfold.engine.model import StepInterrupted
    from tenfold.engine.scheduler import Scheduler
    from tenfold.engine.sequence import Sequence

    def run(stop_at_layer: int | None) -> list[torch.Tensor]:
        from tenfold.engine.async_engine import EngineOptions, LocalEngine
        from tenfold.engine.runner import ModelRunner

        engine = LocalEngine(tiny_path, "tiny-random-llama", EngineOptions(kv_cache_bytes=16 << 20, block_size=4,
                                                                            torch_threads=1, dtype="float32"))
        engine._load()
        engine.adapters.load_now(adapter_a)
        runner = ModelRunner(engine.model, num_blocks=64, block_size=4, adapters=engine.adapters)
        sched = Scheduler(BlockManager(64, 4), max_num_seqs=4, max_batched_tokens=8, adapters=engine.adapters)
        seq = Sequence("s", list(range(300, 321)), SamplingParams(max_tokens=8, temperature=0),
                       adapter_digest=adapter_a.digest, organization="o", priority=1)
        seq.hash_seed = namespace_seed(seq.cache_namespace)
        seq.state = type("State", (), {"generator": torch.Generator()})()
        sched.add(seq)
        forward, logits = engine.model.forward, []
        engine.model.forward = lambda *a, **k: logits.append(forward(*a, **k)) or logits[-1]
        with torch.inference_mode():
            for step in range(8):
                plan = sched.schedule()
                if stop_at_layer is not None:
                    asked = iter(range(99))
                    with pytest.raises(StepInterrupted):
                        runner.execute(plan, lambda: next(asked) >= stop_at_layer)
                    plan = sched.schedule()  # nothing was completed: the same work is planned again
                for s in runner.execute(plan):
                    seq.output_token_ids.append(s.token_id)
                sched.complete(plan)
        return logits, seq.output_token_ids

    (clean, clean_ids), (again, again_ids) = run(None), run(1)
    assert again_ids == clean_ids
    assert len(again) == len(clean) and all(torch.equal(a, b) for a, b in zip(again, clean))
