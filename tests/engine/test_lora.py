"""Adapter validation and residency: rejection of adapters that cannot serve, LRU eviction, reloads."""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from tenfold.engine.types import AdapterError, AdapterRef, GenerationRequest, SamplingParams

from ._helpers import collect, ids_of, prompter, run_with_engine


def copy_adapter(ref: AdapterRef, dest, digest: str) -> AdapterRef:
    shutil.copytree(ref.path, dest)
    return AdapterRef(digest=digest, path=dest)


def edit_config(ref: AdapterRef, **changes) -> None:
    path = ref.path / "adapter_config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def load_error(tiny_path, ref: AdapterRef) -> str:
    async def body(engine):
        with pytest.raises(AdapterError) as info:
            await engine.load_adapter(ref)
        assert engine.resident_adapters() == [] and engine.adapters.in_host() == []
        return str(info.value)

    return run_with_engine(tiny_path, body)


def test_rejects_adapter_for_another_base(tiny_path, adapter_factory):
    ref = adapter_factory("other-base", seed=3, base_name="meta-llama/Llama-3.1-8B")
    assert "trained on base model 'meta-llama/Llama-3.1-8B'" in load_error(tiny_path, ref)


def test_accepts_lenient_base_names(tiny_path, adapter_a, tmp_path):
    by_path = copy_adapter(adapter_a, tmp_path / "p", "by-path")
    edit_config(by_path, base_model_name_or_path=str(tiny_path))
    by_basename = copy_adapter(adapter_a, tmp_path / "b", "by-basename")
    edit_config(by_basename, base_model_name_or_path="/elsewhere/models/tiny-random-llama/")

    async def body(engine):
        await engine.load_adapter(by_path)
        await engine.load_adapter(by_basename)
        return engine.adapters.in_host()

    assert run_with_engine(tiny_path, body) == ["by-path", "by-basename"]


def test_rejects_target_modules_matching_nothing(tiny_path, adapter_a, tmp_path):
    ref = copy_adapter(adapter_a, tmp_path / "t", "bad-targets")
    edit_config(ref, target_modules=["nonexistent_proj"])
    message = load_error(tiny_path, ref)
    assert "match no module" in message and "q_proj" in message


def test_rejects_missing_files_and_non_lora(tiny_path, adapter_a, tmp_path):
    no_weights = copy_adapter(adapter_a, tmp_path / "w", "no-weights")
    (no_weights.path / "adapter_model.safetensors").unlink()
    assert "has no weights" in load_error(tiny_path, no_weights)
    no_config = copy_adapter(adapter_a, tmp_path / "c", "no-config")
    (no_config.path / "adapter_config.json").unlink()
    assert "adapter_config.json" in load_error(tiny_path, no_config)
    ia3 = copy_adapter(adapter_a, tmp_path / "i", "ia3")
    edit_config(ia3, peft_type="IA3")
    assert "only LORA" in load_error(tiny_path, ia3)


def test_rejects_shape_mismatch(tiny_path, adapter_a, tmp_path):
    ref = copy_adapter(adapter_a, tmp_path / "s", "bad-shape")
    weights = ref.path / "adapter_model.safetensors"
    tensors = load_file(str(weights))
    key = next(k for k in tensors if k.endswith("q_proj.lora_A.weight"))
    tensors[key] = torch.zeros(4, 32)
    save_file(tensors, str(weights))
    message = load_error(tiny_path, ref)
    assert "shape [4, 32]" in message and "q_proj" in message


def test_slots_evict_least_recently_used_and_reload_from_host_and_disk(tiny_path, adapter_factory):
    refs = [adapter_factory(f"lru{i}", seed=10 + i) for i in range(3)]

    async def body(engine):
        prompt = prompter(engine).encode("Hello")
        first = ids_of(await collect(engine, prompt, refs[0], max_tokens=6, temperature=0))
        await collect(engine, prompt, refs[1], max_tokens=2)
        slots_after_two = engine.resident_adapters()
        await collect(engine, prompt, refs[2], max_tokens=2)  # evicts refs[0] from its slot and from host memory
        slots, host = engine.resident_adapters(), engine.adapters.in_host()
        again = ids_of(await collect(engine, prompt, refs[0], max_tokens=6, temperature=0))  # back from disk
        return first, slots_after_two, slots, host, again, engine.resident_adapters()

    first, two, slots, host, again, final = run_with_engine(tiny_path, body, adapter_slots=2, host_adapters=2)
    assert two == [refs[0].digest, refs[1].digest]
    assert slots == [refs[1].digest, refs[2].digest]
    assert refs[0].digest not in host and len(host) == 2
    assert again == first
    assert final == [refs[2].digest, refs[0].digest]


def test_adapter_in_use_is_never_evicted(tiny_path, adapter_factory):
    busy, other = adapter_factory("busy", seed=21), adapter_factory("other", seed=22)

    async def body(engine):
        prompt = prompter(engine).encode("Hello")
        alone = ids_of(await collect(engine, prompt, busy, max_tokens=40, temperature=0))
        request = GenerationRequest("long", prompt, SamplingParams(max_tokens=1000, temperature=0), adapter=busy)
        stream = engine.generate(request)
        deltas = [await stream.__anext__()]
        waiting = asyncio.ensure_future(collect(engine, prompt, other, rid="other", max_tokens=3, temperature=0))
        while len(ids_of(deltas)) < 40:
            deltas.append(await stream.__anext__())
        during = engine.resident_adapters()
        other_done_early = waiting.done()
        await stream.aclose()  # the engine drops the request and unpins busy; other takes the slot
        other_out = await waiting
        return alone, ids_of(deltas)[:40], during, other_done_early, other_out, engine.resident_adapters()

    alone, streamed, during, early, other_out, after = run_with_engine(tiny_path, body, adapter_slots=1)
    assert during == [busy.digest] and not early
    assert streamed == alone
    assert other_out[-1].completion_tokens == 3
    assert after == [other.digest]


def test_digest_with_dots_and_colons_is_a_valid_name(tiny_path, adapter_a, tmp_path):
    ref = copy_adapter(adapter_a, tmp_path / "d", "sha256:ab.cd")
    same = AdapterRef(digest="digest-plain", path=ref.path)

    async def body(engine):
        prompt = prompter(engine).encode("Hello")
        weird = ids_of(await collect(engine, prompt, ref, max_tokens=5, temperature=0))
        plain = ids_of(await collect(engine, prompt, same, max_tokens=5, temperature=0))
        await engine.load_adapter(ref)  # idempotent
        return weird, plain, engine.resident_adapters()

    weird, plain, resident = run_with_engine(tiny_path, body)
    assert weird == plain
    assert resident == ["sha256:ab.cd", "digest-plain"]


def test_idle_engine_prewarms_slots_for_loaded_adapters_without_evicting(tiny_path, adapter_factory):
    a, b, c = (adapter_factory(f"warm{i}", seed=30 + i) for i in range(3))

    async def body(engine):
        for ref in (a, b, c):
            await engine.load_adapter(ref)  # deploy time: into host memory
            for _ in range(200):  # the idle engine thread gives it a free slot, if one is left
                if ref.digest in engine.resident_adapters() or len(engine.resident_adapters()) == 2:
                    break
                await asyncio.sleep(0.01)
        warm, host = engine.resident_adapters(), engine.adapters.in_host()
        out = await collect(engine, prompter(engine).encode("Hello"), c, max_tokens=3, temperature=0)
        return warm, host, out, engine.resident_adapters()

    warm, host, out, after = run_with_engine(tiny_path, body, adapter_slots=2)
    assert warm == [b.digest, a.digest]  # two slots filled, nothing evicted; an unused prewarm goes first
    assert sorted(host) == sorted([a.digest, b.digest, c.digest])
    assert out[-1].completion_tokens == 3
    assert after == [a.digest, c.digest]  # c's request evicted the idle prewarmed b


def test_big_stack_growth_is_prepared_off_the_engine_thread(tiny_path, adapter_factory):
    """With every growth of the slot stacks counted as big, the zeroed buffers come from the loader thread:
    requests for new adapters wait for them while others keep stepping, and all outputs are unchanged."""
    refs = [adapter_factory(f"grow{i}", seed=40 + i, r=4 + 4 * i) for i in range(3)]  # ranks 4, 8, 12
    prompt = list(range(50, 70))

    async def body(engine):
        alone = [ids_of(await collect(engine, prompt, ref, rid=f"a{i}", max_tokens=8, temperature=0))
                 for i, ref in enumerate(refs)]
        return alone

    async def growing(engine):
        engine.adapters.sync_grow_bytes = 0
        prepare, prepared = engine.adapters._prepare, []
        engine.adapters._prepare = lambda *a: prepared.append(a) or prepare(*a)
        base = asyncio.ensure_future(collect(engine, prompt, None, rid="base", max_tokens=30, temperature=0))
        outs = await asyncio.gather(*(collect(engine, prompt, ref, rid=f"g{i}", max_tokens=8, temperature=0)
                                      for i, ref in enumerate(refs)))
        await base
        st = engine.adapters.stacks
        return [ids_of(o) for o in outs], st.capacity, st.rank, engine.adapters._prepared is None, prepared

    expected = run_with_engine(tiny_path, body, adapter_slots=4)
    got, capacity, rank, consumed, prepared = run_with_engine(tiny_path, growing, adapter_slots=4)
    assert got == expected
    assert capacity >= 3 and rank == 12 and consumed
    assert prepared and all(r >= 4 for _, r in prepared)  # every growth came from a prepared buffer


@pytest.mark.parametrize("slots", [1, 2])
def test_float16_slots_refuse_an_adapter_they_cannot_hold_and_keep_serving(tiny_path, adapter_a, tmp_path, slots):
    """With ``lora_dtype=float16`` an adapter with a weight beyond float16's range fails its requests with a
    clear error, before it takes a slot: with one slot the resident adapter is not evicted for it, with a
    free slot the idle engine's prewarming skips it; the other adapter serves the same tokens throughout."""
    big = copy_adapter(adapter_a, tmp_path / "big", "too-big-for-float16")
    file = big.path / "adapter_model.safetensors"
    weights = load_file(str(file))
    key = next(k for k in weights if "lora_B" in k)
    weights[key][0, 0] = 1e6
    save_file(weights, str(file))

    async def body(engine):
        before = ids_of(await collect(engine, [5, 6, 7], adapter_a, max_tokens=6, temperature=0))
        await engine.load_adapter(big)  # readable: the range is checked against the slots' dtype
        await asyncio.sleep(0.3)  # the idle engine prewarms slots: it must skip this adapter, not crash
        errors = []
        for _ in range(2):  # the second request fails at once, with the same message
            with pytest.raises(AdapterError) as info:
                await collect(engine, [5, 6, 7], big, max_tokens=6, temperature=0)
            errors.append(str(info.value))
        after = ids_of(await collect(engine, [5, 6, 7], adapter_a, max_tokens=6, temperature=0))
        return before, errors, after, engine.resident_adapters()

    before, errors, after, resident = run_with_engine(tiny_path, body, adapter_slots=slots, lora_dtype="float16")
    assert errors[0] == errors[1]
    assert "too-big-for-float16" in errors[0] and "not finite in float16" in errors[0]
    assert "lora_dtype bfloat16 or float32" in errors[0]
    assert before == after and resident == [adapter_a.digest]
