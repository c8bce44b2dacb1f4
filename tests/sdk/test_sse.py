"""Server-sent events and ``Stream`` / ``AsyncStream`` over canned event streams (no server needed)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from tenfold.sdk import (
    AsyncStream,
    AsyncTenfold,
    ConflictError,
    Stream,
    Tenfold,
    TenfoldError,
)
from tenfold.sdk._streaming import iter_sse_data
from tenfold.types import ChatCompletionChunk, Completion


def _chunk(delta: str | None = None, usage: dict | None = None, finish: str | None = None) -> bytes:
    choices = [] if delta is None and finish is None else [
        {"index": 0, "delta": {"content": delta} if delta else {}, "finish_reason": finish}
    ]
    body = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "ftjob-1",
            "choices": choices, "usage": usage}
    return f"data: {json.dumps(body)}\n\n".encode()


USAGE = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12, "prompt_tokens_details": {"cached_tokens": 4}}
BODY = _chunk("Hel") + _chunk("lo") + _chunk("!", finish="stop") + _chunk(usage=USAGE) + b"data: [DONE]\n\n"


def test_parses_events_and_stops_at_done():
    raw = (
        b": keep-alive comment\n\n"
        b"event: message\ndata: {\"a\": 1}\n\n"
        b"data: {\"b\":\ndata: 2}\n\n"  # one event split over two data lines
        b"id: 7\r\ndata: {\"c\": 3}\r\n\r\n"
        b"data: [DONE]\n\n"
        b"data: {\"after\": \"done\"}\n\n"
    )
    assert list(iter_sse_data(raw.decode().splitlines())) == [{"a": 1}, {"b": 2}, {"c": 3}]


def test_last_event_without_trailing_blank_line_is_kept():
    assert list(iter_sse_data(['data: {"x": 1}'])) == [{"x": 1}]


def test_error_event_raises():
    lines = ['data: {"error": {"message": "engine crashed", "type": "server_error", "code": "engine"}}', ""]
    with pytest.raises(TenfoldError, match="engine crashed") as info:
        list(iter_sse_data(lines))
    assert info.value.code == "engine" and info.value.status is None


def test_malformed_event_raises():
    with pytest.raises(TenfoldError, match="malformed"):
        list(iter_sse_data(["data: {not json", ""]))


def _handler(seen: dict):
    def handler(request: httpx.Request) -> httpx.Response:
        seen["body"] = json.loads(request.content)
        seen["pin"] = request.headers.get("x-tenfold-expected-checkpoint")
        seen["extra"] = request.headers.get("x-extra")
        return httpx.Response(200, content=BODY, headers={
            "content-type": "text/event-stream", "X-Tenfold-Checkpoint": "ftjob-1/step-2"})
    return handler


def test_stream_yields_typed_chunks_and_the_checkpoint():
    seen: dict = {}
    client = Tenfold(base_url="http://test", api_key="tf-x", transport=httpx.MockTransport(_handler(seen)))
    stream = client.chat.completions.create(model="ftjob-1", messages=[{"role": "user", "content": "hi"}], stream=True,
                                            stream_options={"include_usage": True}, expected_checkpoint="",
                                            extra_headers={"X-Extra": "1"}, extra_body={"top_k": 5})
    assert isinstance(stream, Stream) and stream.checkpoint == "ftjob-1/step-2"
    chunks = list(stream)
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks) and len(chunks) == 4
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello!"
    assert chunks[2].choices[0].finish_reason == "stop" and chunks[-1].usage.cached_tokens == 4
    assert stream.response.is_closed and list(stream) == []  # one pass, like the openai SDK
    assert seen["body"] == {"model": "ftjob-1", "messages": [{"role": "user", "content": "hi"}], "stream": True,
                            "stream_options": {"include_usage": True}, "top_k": 5}
    assert seen["pin"] == "" and seen["extra"] == "1"  # an empty pin is sent: it means "no checkpoint"


def test_closing_a_stream_early_closes_the_response():
    client = Tenfold(base_url="http://test", api_key="tf-x", transport=httpx.MockTransport(_handler({})))
    with client.chat.completions.create(model="m", messages=[], stream=True) as stream:
        first = next(stream)
    assert first.choices[0].delta.content == "Hel" and stream.response.is_closed


def test_raw_response_of_a_stream_parses_to_the_stream():
    client = Tenfold(base_url="http://test", api_key="tf-x", transport=httpx.MockTransport(_handler({})))
    raw = client.chat.completions.with_raw_response.create(model="m", messages=[], stream=True)
    assert raw.headers["x-tenfold-checkpoint"] == "ftjob-1/step-2" == raw.checkpoint and raw.status_code == 200
    stream = raw.parse()
    assert isinstance(stream, Stream) and len(list(stream)) == 4


def test_completion_chunks_use_the_completion_model():
    body = (b'data: {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m", "choices": '
            b'[{"index": 0, "text": "hi", "finish_reason": null, "logprobs": null}]}\n\ndata: [DONE]\n\n')
    client = Tenfold(base_url="http://test", api_key="tf-x",
                     transport=httpx.MockTransport(lambda r: httpx.Response(200, content=body)))
    [chunk] = list(client.completions.create(model="m", prompt="x", stream=True))
    assert isinstance(chunk, Completion) and chunk.choices[0].text == "hi"


def test_async_stream():
    async def main() -> tuple[list[str], bool, str | None]:
        client = AsyncTenfold(base_url="http://test", api_key="tf-x", transport=httpx.MockTransport(_handler({})))
        async with client:
            stream = await client.chat.completions.create(model="m", messages=[], stream=True)
            assert isinstance(stream, AsyncStream)
            async with stream:
                texts = [c.choices[0].delta.content async for c in stream if c.choices]
            return texts, stream.response.is_closed, stream.checkpoint

    assert asyncio.run(main()) == (["Hel", "lo", "!"], True, "ftjob-1/step-2")


def test_a_chunk_of_the_wrong_shape_is_a_clear_error():
    client = Tenfold(base_url="http://test", api_key="tf-x", transport=httpx.MockTransport(_handler({})))
    with pytest.raises(TenfoldError, match="does not match Completion"):
        list(client.completions.create(model="m", prompt="hi", stream=True))  # answered with chat chunks


def test_stream_http_error_raises_before_iteration():
    body = {"error": {"message": "serving step-4", "type": "conflict_error", "param": None, "code": "x"}}
    client = Tenfold(base_url="http://test", api_key="tf-x",
                     transport=httpx.MockTransport(lambda r: httpx.Response(409, json=body)))
    with pytest.raises(ConflictError, match="serving step-4") as info:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], stream=True)
    assert info.value.status == 409
