"""Server-sent events parsing, and ``ChatStream`` over a canned SSE byte stream (no server needed)."""

from __future__ import annotations

import json

import httpx
import pytest

from tenfold.sdk import ChatStream, Tenfold, TenfoldError, iter_sse_data


def _chunk(delta: str | None = None, usage: dict | None = None, finish: str | None = None) -> bytes:
    choices = [] if delta is None and finish is None else [
        {"index": 0, "delta": {"content": delta} if delta else {}, "finish_reason": finish}
    ]
    body = {"object": "chat.completion.chunk", "choices": choices, "usage": usage}
    return f"data: {json.dumps(body)}\n\n".encode()


def test_parses_events_and_stops_at_done():
    raw = (
        b": keep-alive comment\n\n"
        b"event: message\ndata: {\"a\": 1}\n\n"
        b"data: {\"b\":\ndata: 2}\n\n"  # one event split over two data lines
        b"id: 7\r\ndata: {\"c\": 3}\r\n\r\n"
        b"data: [DONE]\n\n"
        b"data: {\"after\": \"done\"}\n\n"
    )
    lines = raw.decode().splitlines()
    assert list(iter_sse_data(lines)) == [{"a": 1}, {"b": 2}, {"c": 3}]


def test_last_event_without_trailing_blank_line_is_kept():
    assert list(iter_sse_data(['data: {"x": 1}'])) == [{"x": 1}]


def test_error_event_raises():
    lines = ['data: {"error": {"message": "engine crashed", "type": "server_error", "code": "engine"}}', ""]
    with pytest.raises(TenfoldError, match="engine crashed") as info:
        list(iter_sse_data(lines))
    assert info.value.code == "engine"


def test_malformed_event_raises():
    with pytest.raises(TenfoldError, match="malformed"):
        list(iter_sse_data(["data: {not json", ""]))


def test_chat_stream_yields_deltas_usage_and_checkpoint():
    usage = {"prompt_tokens": 9, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 4}}
    body = _chunk("Hel") + _chunk("lo") + _chunk("!", finish="stop") + _chunk(usage=usage) + b"data: [DONE]\n\n"
    seen: dict = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["body"] = json.loads(request.content)
        seen["pin"] = request.headers.get("x-tenfold-expected-checkpoint")
        return httpx.Response(200, content=body, headers={
            "content-type": "text/event-stream", "X-Tenfold-Checkpoint": "ftjob-1/step-2"})

    client = Tenfold(base_url="http://test", api_key="tf-x", transport=httpx.MockTransport(handler))
    stream = client.chat("ftjob-1", [{"role": "user", "content": "hi"}], stream=True, expected_checkpoint="")
    assert isinstance(stream, ChatStream)
    assert stream.checkpoint == "ftjob-1/step-2"
    assert list(stream) == ["Hel", "lo", "!"]
    assert stream.content == "Hello!"
    assert stream.finish_reason == "stop"
    assert (stream.prompt_tokens, stream.cached_tokens, stream.completion_tokens) == (9, 4, 3)
    assert seen["body"]["stream"] is True and seen["body"]["stream_options"] == {"include_usage": True}
    assert seen["pin"] == ""  # an empty pin is sent: it means "require no checkpoint"
    with pytest.raises(RuntimeError):
        list(stream)


def test_stream_http_error_raises_before_iteration():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(409, json={"error": {"message": "serving step-4", "type": "conflict", "code": "x"}})

    client = Tenfold(base_url="http://test", api_key="tf-x", transport=httpx.MockTransport(handler))
    with pytest.raises(TenfoldError, match="serving step-4") as info:
        client.chat("m", [{"role": "user", "content": "hi"}], stream=True)
    assert info.value.status == 409
