"""Prefix caching: a later prompt sharing a prefix with a finished request reuses its KV (reported as
``cached_tokens``) and produces exactly the tokens a cold run produces; adapters and organizations
never share KV; the budget evicts least recently used entries."""

from __future__ import annotations

from tenfold.engine.types import GenerationRequest, SamplingParams

from ._helpers import ids_of, run_with_engine

PROMPT = list(range(1000, 1050))  # 50 tokens: three whole blocks of 16 are reusable


async def _run(engine, prompt, *, adapter=None, organization="org-1", rid="r", max_tokens=6):
    req = GenerationRequest(rid, prompt, SamplingParams(max_tokens=max_tokens, temperature=0.0), adapter=adapter,
                            organization=organization)
    return [d async for d in engine.generate(req)]


def test_hit_reports_cached_tokens_and_matches_cold_output(tiny_path):
    async def body(engine):
        cold = await _run(engine, PROMPT)
        warm = await _run(engine, PROMPT)
        longer = await _run(engine, PROMPT + [7, 8, 9])
        return cold, warm, longer

    cold, warm, longer = run_with_engine(tiny_path, body)
    assert cold[-1].cached_tokens == 0
    assert warm[-1].cached_tokens == 48 and warm[-1].prompt_tokens == 50
    assert ids_of(warm) == ids_of(cold)
    # the first request's KV covers prompt + generated[:-1] = 55 tokens → 3 whole blocks reusable
    assert longer[-1].cached_tokens == 48

    def cold_longer(engine):
        return _run(engine, PROMPT + [7, 8, 9])

    reference = run_with_engine(tiny_path, cold_longer)
    assert reference[-1].cached_tokens == 0 and ids_of(longer) == ids_of(reference)


def test_multi_turn_reuses_the_generated_answer(tiny_path):
    async def body(engine):
        first = await _run(engine, PROMPT, max_tokens=20)
        follow_up = PROMPT + ids_of(first)[:-1] + [11, 12, 13, 14, 15, 16, 17, 18, 19, 20]
        return await _run(engine, follow_up), len(PROMPT) + len(ids_of(first)) - 1

    second, kv_len = run_with_engine(tiny_path, body)
    assert second[-1].cached_tokens == kv_len // 16 * 16 > 48


def test_no_sharing_across_adapters_or_organizations(tiny_path, adapter_a):
    async def body(engine):
        await _run(engine, PROMPT, organization="org-1")
        other_org = await _run(engine, PROMPT, organization="org-2")
        with_adapter = await _run(engine, PROMPT, organization="org-1", adapter=adapter_a)
        same_again = await _run(engine, PROMPT, organization="org-1", adapter=adapter_a)
        spaces = ["base|org-1", "base|org-2", f"{adapter_a.digest}|org-1"]
        blocks = {ns: engine.blocks.cached_block_ids(ns) for ns in spaces}
        return other_org, with_adapter, same_again, blocks

    other_org, with_adapter, same_again, blocks = run_with_engine(tiny_path, body)
    assert other_org[-1].cached_tokens == 0
    assert with_adapter[-1].cached_tokens == 0
    assert same_again[-1].cached_tokens == 48 and ids_of(same_again) == ids_of(with_adapter)
    # The same tokens under three namespaces: three disjoint sets of blocks, each covering the prompt.
    assert all(len(b) >= 3 for b in blocks.values())
    a, b, c = blocks.values()
    assert not (a & b) and not (a & c) and not (b & c)


def test_prefix_hit_is_token_identical_under_sampling_with_a_seed(tiny_path):
    async def body(engine):
        req = dict(max_tokens=12, temperature=0.9, top_k=50, seed=3)
        runs = []
        for rid in ("miss", "hit"):
            request = GenerationRequest(rid, PROMPT, SamplingParams(**req), organization="org-x")
            runs.append([d async for d in engine.generate(request)])
        return runs

    first, second = run_with_engine(tiny_path, body)
    assert first[-1].cached_tokens == 0 and second[-1].cached_tokens == 48
    assert ids_of(first) == ids_of(second)
