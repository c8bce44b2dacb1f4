"""``AsyncTenfold`` against the real server: the same resources awaited, streaming with ``async for``,
``jobs.wait`` and ``batches`` helpers as coroutines, raw responses and typed errors."""

from __future__ import annotations

import asyncio

import pytest

from tenfold.sdk import AsyncStream, AsyncTenfold, NotFoundError
from tenfold.types import (
    ChatCompletion,
    ChatCompletionChunk,
    FileObject,
    FineTuningJob,
    JobEvent,
)
from tests.sdk.conftest import ROWS, jsonl


def run(coro):
    return asyncio.run(coro)


def test_async_calls_and_streams(server, base_model):
    async def main():
        async with AsyncTenfold(base_url=server.base_url, api_key=server.api_key, timeout=120) as client:
            health, me = await asyncio.gather(client.health(), client.me())
            assert health.status == "ok" and me.is_admin
            uploaded = await client.files.create(file=("async.jsonl", jsonl(ROWS[:2])), purpose="fine-tune")
            assert isinstance(uploaded, FileObject)
            assert (await client.files.retrieve(uploaded.id)).id == uploaded.id
            messages = [{"role": "user", "content": "Say hi."}]
            answer = await client.chat.completions.create(model=base_model, messages=messages, max_tokens=5,
                                                          temperature=0)
            assert isinstance(answer, ChatCompletion)
            stream = await client.chat.completions.create(model=base_model, messages=messages, max_tokens=5,
                                                          temperature=0, stream=True,
                                                          stream_options={"include_usage": True})
            assert isinstance(stream, AsyncStream)
            chunks = [c async for c in stream]
            assert all(isinstance(c, ChatCompletionChunk) for c in chunks) and stream.response.is_closed
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert text == answer.choices[0].message.content
            assert chunks[-1].usage.completion_tokens == answer.usage.completion_tokens
            raw = await client.models.with_raw_response.list()
            assert raw.status_code == 200 and base_model in [m.id for m in raw.parse().data]
            with pytest.raises(NotFoundError):
                await client.fine_tuning.jobs.retrieve("ftjob-nope")

    run(main())


def test_async_wait_and_batch_helpers(server, client, finished_job, base_model):
    job, events, _ = finished_job

    async def main():
        async with AsyncTenfold(base_url=server.base_url, api_key=server.api_key, timeout=120) as aclient:
            seen: list[JobEvent] = []
            final = await aclient.fine_tuning.jobs.wait(job.id, on_event=seen.append, poll=0.1, timeout=30)
            assert isinstance(final, FineTuningJob) and final.status == "succeeded"
            assert [e.id for e in seen] == [e.id for e in events]  # a finished job: every event, oldest first
            lines = [{"custom_id": "a", "method": "POST", "url": "/v1/completions",
                      "body": {"model": base_model, "prompt": "Hi", "max_tokens": 2}}]
            source = await aclient.files.create(file=("b.jsonl", jsonl(lines)), purpose="batch")
            batch = await aclient.batches.create(input_file_id=source.id, endpoint="/v1/completions")
            done = await aclient.batches.wait(batch.id, poll=0.1, timeout=120)
            assert done.status == "completed"
            [line] = await aclient.batches.results(done)
            assert line.custom_id == "a" and line.response.body["object"] == "text_completion"

    run(main())
