"""The hosted-LoRA helper (``tenfold.HostedLoraClient``, ``chat_completion_with_lora``, ``generate_with_lora``)
against the shared test server: chat and raw completions return the SDK's typed answers, ``hosting_url``
works with or without ``/v1``, the API key comes from ``TENFOLD_API_KEY`` when not given, extra keyword
arguments reach the server, and a per-call ``timeout_seconds`` limits that call only."""

from __future__ import annotations

import time

import pytest

from tenfold import (
    APITimeoutError,
    HostedLoraClient,
    NotFoundError,
    chat_completion_with_lora,
    generate_with_lora,
)
from tenfold.types.chat import ChatCompletion
from tenfold.types.completions import Completion
from tests.conftest import TINY

MESSAGES = [{"role": "user", "content": "Tell me a long story."}]
SLOW = {"max_tokens": 400, "ignore_eos": True}  # 400 tokens, never stopping early: far longer than 50 ms


@pytest.fixture()
def env(server, tmp_path, monkeypatch):
    monkeypatch.setenv("TENFOLD_CONFIG_DIR", str(tmp_path / "config"))  # no saved login to fall back on
    monkeypatch.delenv("TENFOLD_BASE_URL", raising=False)
    monkeypatch.setenv("TENFOLD_API_KEY", server.api_key)


def test_chat_completion_and_generate_return_typed_answers(server, env):
    with HostedLoraClient(hosting_url=server.url) as client:  # no /v1; the key from TENFOLD_API_KEY
        assert client.hosting_url == server.base_url and client.timeout_seconds == 60.0
        chat = client.chat_completion(TINY, [{"role": "user", "content": "What is 2 plus 3?"}], max_tokens=6,
                                      ignore_eos=True, seed=3)
        assert isinstance(chat, ChatCompletion) and chat.model == TINY
        assert chat.usage.completion_tokens == 6 and chat.choices[0].message.content
        text = client.generate(TINY, "Once upon a time", max_tokens=5, ignore_eos=True)
        assert isinstance(text, Completion) and text.usage.completion_tokens == 5 and text.choices[0].text
        again = client.generate(TINY, "Once upon a time", max_tokens=5, ignore_eos=True)
        assert again.choices[0].text == text.choices[0].text  # temperature 0 by default: greedy
        with pytest.raises(NotFoundError):
            client.chat_completion("ftjob-not-deployed", MESSAGES, max_tokens=2)
    with HostedLoraClient(hosting_url=server.base_url, api_key=server.api_key) as with_v1:
        assert with_v1.hosting_url == server.base_url
        assert with_v1.generate(TINY, "Hi", max_tokens=2, ignore_eos=True).usage.completion_tokens == 2


def test_a_per_call_timeout_limits_that_call_only(server, env):
    with HostedLoraClient(hosting_url=server.base_url, timeout_seconds=600.0) as client:
        for call in (lambda **kw: client.chat_completion(TINY, MESSAGES, **SLOW, **kw),
                     lambda **kw: client.generate(TINY, "Once upon a time", **SLOW, **kw)):
            started = time.monotonic()
            with pytest.raises(APITimeoutError, match="timed out after 0.05s"):
                call(timeout_seconds=0.05)
            assert time.monotonic() - started < 10  # far below the client-wide 600 s
            assert client.timeout_seconds == 600.0
            started = time.monotonic()
            answer = call()  # the same call under the client-wide timeout finishes
            assert answer.usage.completion_tokens == 400 and time.monotonic() - started > 0.05
        with pytest.raises(ValueError, match="positive number of seconds"):
            client.generate(TINY, "Hi", timeout_seconds=0)


def test_module_helpers(server, env):
    chat = chat_completion_with_lora(TINY, MESSAGES, hosting_url=server.url, max_tokens=4, ignore_eos=True)
    assert isinstance(chat, ChatCompletion) and chat.usage.completion_tokens == 4
    text = generate_with_lora(TINY, "Once upon a time", hosting_url=server.base_url, api_key=server.api_key,
                              max_tokens=3, ignore_eos=True, timeout_seconds=120)
    assert isinstance(text, Completion) and text.usage.completion_tokens == 3
    for helper, arg in ((chat_completion_with_lora, MESSAGES), (generate_with_lora, "Once upon a time")):
        started = time.monotonic()
        with pytest.raises(APITimeoutError):
            helper(TINY, arg, hosting_url=server.url, timeout_seconds=0.05, **SLOW)
        assert time.monotonic() - started < 10
    with pytest.raises(ValueError, match="cannot stream"):
        generate_with_lora(TINY, "Hi", hosting_url=server.url, stream=True)
