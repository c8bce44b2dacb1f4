"""The engine's features through the API with the official ``openai`` SDK: n choices, logprobs and
top_logprobs, penalties and extensions, cached-token usage on streams, /metrics, and 429 with Retry-After
when the engine's queue is full."""

from __future__ import annotations

import re
import threading
import time

import openai
import pytest

from tests.conftest import start_server, stop_server

MSG = [{"role": "user", "content": "Write a long story about a lighthouse keeper and the sea."}]


@pytest.fixture(scope="module")
def oai(server):
    return openai.OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0, timeout=120)


def test_n_choices_are_indexed_and_seeded(oai):
    kw = dict(model="tiny-random-llama", messages=MSG, max_tokens=6, temperature=1.0, seed=5)
    r = oai.chat.completions.create(n=3, **kw)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert len({c.message.content for c in r.choices}) > 1  # different samples
    assert r.usage.completion_tokens == 18
    again = oai.chat.completions.create(n=3, **kw)
    assert [c.message.content for c in again.choices] == [c.message.content for c in r.choices]
    streamed = oai.chat.completions.create(n=2, stream=True, stream_options={"include_usage": True}, **kw)
    texts = {0: "", 1: ""}
    for chunk in streamed:
        for c in chunk.choices:
            texts[c.index] += c.delta.content or ""
    assert [texts[0], texts[1]] == [c.message.content for c in r.choices[:2]]


def test_chat_logprobs_and_top_logprobs(oai):
    r = oai.chat.completions.create(model="tiny-random-llama", messages=MSG, max_tokens=4, temperature=0,
                                    logprobs=True, top_logprobs=2)
    content = r.choices[0].logprobs.content
    assert len(content) == 4
    assert "".join(t.token for t in content) == r.choices[0].message.content
    for t in content:
        assert t.logprob <= 0 and len(t.top_logprobs) == 2
        assert t.top_logprobs[0].token == t.token  # greedy picks the most likely token
        assert t.bytes == list(t.token.encode())
    plain = oai.chat.completions.create(model="tiny-random-llama", messages=MSG, max_tokens=4, temperature=0)
    assert plain.choices[0].logprobs is None


def test_completion_logprobs_and_extensions(oai):
    r = oai.completions.create(model="tiny-random-llama", prompt="The sea", max_tokens=5, temperature=0, logprobs=3)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == 5 and len(lp.token_logprobs) == 5 and all(len(t) <= 3 for t in lp.top_logprobs)
    assert lp.text_offset[0] == 0 and "".join(lp.tokens) == r.choices[0].text
    penalized = oai.completions.create(model="tiny-random-llama", prompt="The sea", max_tokens=30, temperature=0,
                                       frequency_penalty=2.0, presence_penalty=2.0,
                                       extra_body={"top_k": 5, "ignore_eos": True})
    assert penalized.usage.completion_tokens == 30
    with pytest.raises(openai.BadRequestError, match="presence_penalty"):
        oai.completions.create(model="tiny-random-llama", prompt="x", presence_penalty=3)


def test_streamed_usage_reports_prefix_cache_hits(oai):
    system = {"role": "system", "content": "You are a careful assistant. " * 20}
    kw = dict(model="tiny-random-llama", max_tokens=2, temperature=0, stream=True,
              stream_options={"include_usage": True})
    list(oai.chat.completions.create(messages=[system, {"role": "user", "content": "one"}], **kw))
    chunks = list(oai.chat.completions.create(messages=[system, {"role": "user", "content": "two"}], **kw))
    usage = chunks[-1].usage
    assert usage.prompt_tokens_details.cached_tokens >= 96 and usage.prompt_tokens > usage.prompt_tokens_details.cached_tokens


def test_metrics_need_an_admin_key(server):
    from tests.conftest import new_org_key

    with server.client() as c:
        text = c.get(server.url + "/metrics").text
    assert "tenfold_engine_kv_blocks_total" in text and "tenfold_engine_running_sequences" in text
    with server.client(new_org_key(server, "metrics-reader")) as c:
        assert c.get(server.url + "/metrics").status_code == 403


def test_full_queue_answers_429_with_retry_after(tmp_path, model_cache):
    s = start_server(tmp_path / "home", model_cache, extra_env={"TENFOLD_MAX_WAITING_REQUESTS": "1",
                                                                "TENFOLD_MAX_NUM_SEQS": "1"})
    try:
        body = {"model": "tiny-random-llama", "prompt": "Go", "max_tokens": 2000, "temperature": 0,
                "ignore_eos": True}
        for _attempt in range(5):  # the tiny model is fast: if the running request ends before the probe
            results: list[int] = []  # arrives, the queue was not full at that moment; try again

            def long_request() -> None:
                with s.client() as c:
                    results.append(c.post("/completions", json=body, timeout=120).status_code)

            def gauge(c, name: str) -> float:
                m = re.search(rf"tenfold_engine_{name}_sequences\{{[^}}]*\}} (\S+)", c.get(s.url + "/metrics").text)
                return float(m.group(1)) if m else 0.0

            def wait_for(c, name: str) -> None:
                for _ in range(400):
                    if gauge(c, name) >= 1:
                        return
                    time.sleep(0.01)

            threads = [threading.Thread(target=long_request) for _ in range(2)]
            with s.client() as c:
                # one request runs, then a second waits (sent together, the second could find the first
                # still waiting and be refused itself), then the probe finds the queue full
                threads[0].start()
                wait_for(c, "running")
                threads[1].start()
                wait_for(c, "waiting")
                refused = c.post("/completions", json={**body, "max_tokens": 1})
            for t in threads:
                t.join()
            assert results == [200, 200]
            if refused.status_code != 200:
                break
        assert refused.status_code == 429, refused.text
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.json()["error"]["type"] == "rate_limit_error"
        oai = openai.OpenAI(base_url=s.base_url, api_key=s.api_key, max_retries=0)
        assert oai.completions.create(model="tiny-random-llama", prompt="Go", max_tokens=1).usage.completion_tokens == 1
    finally:
        stop_server(s)
