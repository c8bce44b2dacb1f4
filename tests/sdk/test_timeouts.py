"""The client-wide ``timeout`` and the per-call ``timeout_seconds`` every method takes."""

from __future__ import annotations

import time

import httpx
import pytest

from tenfold.sdk import APITimeoutError, Tenfold

MODEL = {"id": "m", "object": "model", "created": 0, "owned_by": "tenfold", "root": "m", "parent": None,
         "checkpoint": None}


def test_per_call_timeout_overrides_the_client_timeout_for_that_call_only():
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return httpx.Response(200, json=MODEL)

    client = Tenfold(base_url="http://test", api_key="tf-x", timeout=45, transport=httpx.MockTransport(handler))
    client.models.retrieve("m", timeout_seconds=0.25)
    client.models.retrieve("m")
    assert seen[0] == {"connect": 0.25, "read": 0.25, "write": 0.25, "pool": 0.25}
    assert seen[1] == {"connect": 45, "read": 45, "write": 45, "pool": 45}


def test_a_tight_per_call_timeout_fails_fast_on_a_slow_call(server, base_model):
    client = Tenfold(base_url=server.base_url, api_key=server.api_key, timeout=300)
    messages = [{"role": "user", "content": "Tell me a long story."}]
    for stream in (False, True):
        started = time.monotonic()
        with pytest.raises(APITimeoutError, match="timed out after 0.001s"):
            client.chat.completions.create(model=base_model, messages=messages, max_tokens=400,
                                           extra_body={"ignore_eos": True}, stream=stream, timeout_seconds=0.001)
        assert time.monotonic() - started < 10
    # the client-wide timeout is long: the same call without the per-call limit finishes
    answer = client.chat.completions.create(model=base_model, messages=messages, max_tokens=400,
                                            extra_body={"ignore_eos": True})
    assert answer.usage.completion_tokens == 400
