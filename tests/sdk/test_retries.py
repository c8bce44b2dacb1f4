"""The retry policy, against canned answers (``httpx.MockTransport``): what is retried, how long the client
waits first, and what is never sent twice. Sleeps are recorded, not slept."""

from __future__ import annotations

import asyncio
import email.utils
import time

import httpx
import pytest

from tenfold.sdk import (
    APIConnectionError,
    APITimeoutError,
    AsyncTenfold,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    RateLimitError,
    ServiceUnavailableError,
    Tenfold,
)
from tenfold.sdk._retries import backoff, parse_retry_after

MODEL = {"id": "m", "object": "model", "created": 0, "owned_by": "tenfold", "root": "m", "parent": None,
         "checkpoint": None}
CHAT = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m", "choices": [
    {"index": 0, "message": {"role": "assistant", "content": "ok", "refusal": None}, "finish_reason": "stop",
     "logprobs": None}], "usage": None, "system_fingerprint": None}


def error(status: int, code: str | None, retry_after: str | None = None) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    body = {"error": {"message": f"{status} {code}", "type": "x", "param": None, "code": code}}
    return httpx.Response(status, json=body, headers=headers)


class Script:
    """Answers (or raises) the scripted items in order, then 200s; records every request."""

    def __init__(self, *items, ok: dict = MODEL) -> None:
        self.items, self.ok, self.requests = list(items), ok, []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.items:
            item = self.items.pop(0)
            if isinstance(item, Exception):
                raise item
            return item
        return httpx.Response(200, json=self.ok)


def make(script: Script, **kwargs) -> tuple[Tenfold, list[float]]:
    client = Tenfold(base_url="http://test", api_key="tf-x", transport=httpx.MockTransport(script), **kwargs)
    sleeps: list[float] = []
    client._sleep = sleeps.append
    return client, sleeps


def chat(client: Tenfold):
    return client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])


def test_engine_overloaded_429_waits_retry_after_then_succeeds():
    script = Script(error(429, "engine_overloaded", "3"), ok=CHAT)
    client, sleeps = make(script)
    raw = client.chat.completions.with_raw_response.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert raw.parse().choices[0].message.content == "ok" and raw.retries_taken == 1
    assert sleeps == [3.0] and len(script.requests) == 2
    assert script.requests[0].content == script.requests[1].content  # the same body sent again


def test_engine_overloaded_without_retry_after_backs_off_then_gives_up():
    script = Script(*[error(429, "engine_overloaded") for _ in range(3)], ok=CHAT)
    client, sleeps = make(script)
    with pytest.raises(RateLimitError, match="engine_overloaded"):
        chat(client)
    assert sleeps == [backoff(0), backoff(1)] == [0.5, 1.0] and len(script.requests) == 3  # max_retries=2


def test_retry_after_is_capped_at_a_minute_and_max_retries_is_honoured():
    script = Script(error(503, "DEPLOYMENT_SCALING_UP", "600"), ok=CHAT)
    client, sleeps = make(script, max_retries=5)
    assert chat(client).id == "chatcmpl-1" and sleeps == [60.0]
    script = Script(error(429, "engine_overloaded", "1"), ok=CHAT)
    client, sleeps = make(script, max_retries=0)
    with pytest.raises(RateLimitError):
        chat(client)
    assert sleeps == [] and len(script.requests) == 1


def test_503_is_retried_only_with_retry_after():
    client, sleeps = make(Script(error(503, "DEPLOYMENT_SCALING_UP", "2")))
    assert client.models.retrieve("m").id == "m" and sleeps == [2.0]
    script = Script(error(503, None))
    client, sleeps = make(script)
    with pytest.raises(ServiceUnavailableError):
        client.models.retrieve("m")
    assert sleeps == [] and len(script.requests) == 1


@pytest.mark.parametrize("answer, cls", [
    (error(429, "spend_limit_exceeded", "86400"), RateLimitError), (error(400, "bad", "1"), BadRequestError),
    (error(404, None, "1"), NotFoundError), (error(409, None, "1"), ConflictError),
    (error(500, None, "1"), InternalServerError),
])
def test_final_answers_are_never_retried(answer, cls):
    script = Script(answer, ok=CHAT)
    client, sleeps = make(script)
    with pytest.raises(cls):
        chat(client)
    assert sleeps == [] and len(script.requests) == 1


def test_a_post_that_may_have_reached_the_server_is_not_sent_twice():
    for exc in (httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("server hung up"), httpx.ReadError("reset")):
        script = Script(exc, ok=CHAT)
        client, sleeps = make(script)
        with pytest.raises(APITimeoutError if isinstance(exc, httpx.TimeoutException) else APIConnectionError):
            chat(client)
        assert sleeps == [] and len(script.requests) == 1, exc
    script = Script(httpx.ReadTimeout("slow"))
    client, sleeps = make(script)
    with pytest.raises(APITimeoutError):
        client.adapters.delete("ftjob-1")  # DELETE is treated like POST
    assert len(script.requests) == 1


def test_a_connect_failure_is_retried_for_any_method():
    script = Script(httpx.ConnectError("refused"), httpx.ConnectTimeout("slow connect"), ok=CHAT)
    client, sleeps = make(script)
    assert chat(client).id == "chatcmpl-1" and sleeps == [0.5, 1.0] and len(script.requests) == 3


def test_idempotent_reads_are_retried_after_a_broken_connection():
    script = Script(httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("hung up"))
    client, sleeps = make(script)
    assert client.models.retrieve("m").id == "m" and sleeps == [0.5, 1.0]
    assert [r.method for r in script.requests] == ["GET"] * 3


def test_async_client_follows_the_same_policy():
    script = Script(error(429, "engine_overloaded", "1"), httpx.ConnectError("refused"), ok=CHAT)
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async def main() -> str:
        async with AsyncTenfold(base_url="http://test", api_key="tf-x",
                                transport=httpx.MockTransport(script)) as client:
            client._sleep = fake_sleep
            answer = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
            return answer.id

    assert asyncio.run(main()) == "chatcmpl-1" and sleeps == [1.0, 1.0] and len(script.requests) == 3


def test_retry_after_parsing():
    assert parse_retry_after("7") == 7.0 and parse_retry_after("0.5") == 0.5 and parse_retry_after("-3") == 0.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past
    assert 3500 < parse_retry_after(email.utils.formatdate(time.time() + 3600, usegmt=True)) <= 3600
