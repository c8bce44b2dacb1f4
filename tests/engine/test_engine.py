"""The engine on the tiny model: agreement with transformers/PEFT, sampling, stops, limits, concurrency
without adapter mixing, cancellation, back-pressure, errors."""

from __future__ import annotations

import asyncio

import pytest
import torch

from tenfold.engine.types import AdapterRef, EngineError, GenerationRequest, SamplingParams
from tenfold.models.registry import load_causal_lm

from ._helpers import collect, ids_of, prompter, run_with_engine, text_of

MESSAGES = [{"role": "user", "content": "Tell me a story about a cat."}]


def reference_greedy(tiny_path, prompt: list[int], max_new_tokens: int, adapter: AdapterRef | None = None) -> list[int]:
    """transformers (+ PEFT) ``generate(do_sample=False)``: the numerical reference."""
    model = load_causal_lm(tiny_path)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter.path)).eval()
    input_ids = torch.tensor([prompt])
    with torch.inference_mode():
        out = model.generate(
            input_ids=input_ids, attention_mask=torch.ones_like(input_ids), do_sample=False, max_new_tokens=max_new_tokens
        )
    return out[0, len(prompt) :].tolist()


def test_greedy_matches_transformers_and_peft(tiny_path, adapter_a):
    async def body(engine):
        prompt = prompter(engine).chat_prompt(MESSAGES)
        base = await collect(engine, prompt, max_tokens=16, temperature=0)
        tuned = await collect(engine, prompt, adapter_a, max_tokens=16, temperature=0)
        return prompt, base, tuned

    prompt, base, tuned = run_with_engine(tiny_path, body)
    assert ids_of(base) == reference_greedy(tiny_path, prompt, 16)
    assert ids_of(tuned) == reference_greedy(tiny_path, prompt, 16, adapter_a)
    assert ids_of(base) != ids_of(tuned)  # the adapter really changes the output
    final = base[-1]
    assert final.finish_reason == "length"
    assert (final.prompt_tokens, final.completion_tokens, final.cached_tokens) == (len(prompt), 16, 0)
    assert all(d.finish_reason is None for d in base[:-1])


def test_seed_reproducible_and_sampling_varies(tiny_path):
    async def body(engine):
        prompt = prompter(engine).encode("Once upon a time")
        runs = [await collect(engine, prompt, max_tokens=12, temperature=1.0, seed=s) for s in (7, 7, 8)]
        nucleus = await collect(engine, prompt, max_tokens=12, temperature=1.0, top_p=1e-6, seed=9)
        greedy = await collect(engine, prompt, max_tokens=12, temperature=0)
        return runs, nucleus, greedy

    (a, b, c), nucleus, greedy = run_with_engine(tiny_path, body)
    assert ids_of(a) == ids_of(b)
    assert ids_of(a) != ids_of(c)
    assert ids_of(nucleus) == ids_of(greedy)  # a tiny top_p keeps only the most likely token


def test_stop_strings_cut_text_and_are_not_returned(tiny_path):
    async def body(engine):
        prompt = prompter(engine).encode("The weather today")
        full = await collect(engine, prompt, max_tokens=24, temperature=0)
        text = text_of(full)
        stop = text[10:14]
        stopped = await collect(engine, prompt, max_tokens=24, temperature=0, stop=(stop, "never-appears"))
        return text, stop, stopped

    text, stop, stopped = run_with_engine(tiny_path, body)
    assert len(stop) == 4
    expected = text[: text.index(stop)]
    assert text_of(stopped) == expected
    assert stop not in text_of(stopped)
    assert stopped[-1].finish_reason == "stop"
    assert stopped[-1].completion_tokens < 24


def test_eos_token_finishes_with_stop(tiny_path):
    async def body(engine):
        prompt = prompter(engine).encode("Hello")
        first = ids_of(await collect(engine, prompt, max_tokens=3, temperature=0))
        engine.eos_token_ids.add(first[1])  # pretend the second greedy token is an end-of-turn token
        return first, await collect(engine, prompt, max_tokens=3, temperature=0)

    first, deltas = run_with_engine(tiny_path, body)
    assert deltas[-1].finish_reason == "stop"
    assert deltas[-1].completion_tokens == 2
    assert ids_of(deltas) == first[:2]


def test_context_overflow_and_bad_values_raise_before_starting(tiny_path):
    async def body(engine):
        assert engine.max_context == 2048
        with pytest.raises(EngineError, match="maximum context length is 2048"):
            engine.generate(GenerationRequest("x", [5] * 2000, SamplingParams(max_tokens=100)))
        with pytest.raises(EngineError, match="empty"):
            engine.generate(GenerationRequest("x", [], SamplingParams()))
        with pytest.raises(EngineError, match="max_tokens"):
            engine.generate(GenerationRequest("x", [5], SamplingParams(max_tokens=0)))
        with pytest.raises(EngineError, match="top_p"):
            engine.generate(GenerationRequest("x", [5], SamplingParams(top_p=0)))
        with pytest.raises(EngineError, match="token ids"):
            engine.generate(GenerationRequest("x", [10**9], SamplingParams()))
        return await collect(engine, [5] * 2000, max_tokens=48, temperature=0)  # exactly at the limit is fine

    deltas = run_with_engine(tiny_path, body)
    assert deltas[-1].completion_tokens == 48


def test_concurrent_requests_never_mix_adapters(tiny_path, adapter_a, adapter_b):
    async def body(engine):
        prompt = prompter(engine).chat_prompt(MESSAGES)
        adapters = [None, adapter_a, adapter_b, adapter_a, None]
        alone = [ids_of(await collect(engine, prompt, ad, max_tokens=10, temperature=0)) for ad in adapters]
        progress: list[str] = []

        async def tracked(i, ad, n):
            out = []
            request = GenerationRequest(f"c{i}", prompt, SamplingParams(max_tokens=n, temperature=0), adapter=ad)
            async for delta in engine.generate(request):
                progress.append(f"c{i}")
                out.append(delta)
            return out

        together = await asyncio.gather(*(tracked(i, ad, 10) for i, ad in enumerate(adapters)))
        return alone, [ids_of(t) for t in together], progress

    alone, together, progress = run_with_engine(tiny_path, body)
    assert together == alone
    assert alone[0] != alone[1] != alone[2] and alone[1] == alone[3] and alone[0] == alone[4]
    # streams progress together: the first request has not finished when the others start emitting
    assert progress.index("c4") < len(progress) - progress[::-1].index("c0") - 1


def test_short_request_is_not_blocked_by_a_long_one(tiny_path):
    async def body(engine):
        prompt = prompter(engine).encode("Count with me")
        order: list[str] = []

        async def run(name, n):
            await collect(engine, prompt, rid=name, max_tokens=n, temperature=0)
            order.append(name)

        await asyncio.gather(run("long", 200), run("short", 3))
        return order

    assert run_with_engine(tiny_path, body) == ["short", "long"]


def test_cancelled_consumer_drops_request(tiny_path):
    async def body(engine):
        prompt = prompter(engine).encode("Go on forever")
        stream = engine.generate(GenerationRequest("c", prompt, SamplingParams(max_tokens=1500, temperature=0)))
        got = 0
        async for _ in stream:
            got += 1
            if got == 3:
                break
        await stream.aclose()
        for _ in range(200):
            if not engine.scheduler.has_work() and engine.blocks.num_used() == 0:
                break
            await asyncio.sleep(0.01)
        remaining = len(engine.scheduler.running) + engine.blocks.num_used()
        after = await collect(engine, prompt, max_tokens=2, temperature=0)  # still serving
        return got, remaining, after

    got, remaining, after = run_with_engine(tiny_path, body)
    assert got == 3 and remaining == 0
    assert after[-1].finish_reason == "length"


def test_bad_request_does_not_kill_the_engine(tiny_path, tmp_path):
    missing = AdapterRef(digest="missing", path=tmp_path / "nope")

    async def body(engine):
        prompt = prompter(engine).encode("Hi")
        with pytest.raises(EngineError, match="does not exist"):
            await collect(engine, prompt, missing, max_tokens=2)
        return await collect(engine, prompt, max_tokens=2, temperature=0)

    assert run_with_engine(tiny_path, body)[-1].completion_tokens == 2


def test_stop_aborts_active_requests(tiny_path):
    async def main():
        from tenfold.engine.async_engine import EngineOptions, LocalEngine

        engine = LocalEngine(tiny_path, "tiny-random-llama", EngineOptions(torch_threads=1, kv_cache_bytes=32 << 20,
                                                                                 dtype="float32"))
        await engine.start()
        request = GenerationRequest("s", prompter(engine).encode("Hi"), SamplingParams(max_tokens=1500, temperature=0))
        stream = engine.generate(request)
        first = await stream.__anext__()
        await engine.stop()
        rest = [d async for d in stream]
        with pytest.raises(EngineError, match="stopped"):
            engine.generate(request)
        return first, rest

    first, rest = asyncio.run(main())
    assert first.finish_reason is None
    assert rest[-1].finish_reason == "abort"


def test_model_shape_serves_sliding_window_models_up_to_their_window():
    from tenfold.engine.shapes import model_shape

    base = {"num_attention_heads": 4, "hidden_size": 32, "vocab_size": 10, "num_hidden_layers": 1,
            "intermediate_size": 64, "max_position_embeddings": 32768}
    assert model_shape(base).max_context == 32768  # Llama: no window
    assert model_shape({**base, "sliding_window": 4096}).max_context == 4096  # Mistral v0.1
    assert model_shape({**base, "sliding_window": None}).max_context == 32768  # Mistral v0.2+
    assert model_shape({**base, "sliding_window": 4096, "use_sliding_window": False}).max_context == 32768  # Qwen2
