"""Running a prepared ``Call`` on its engine: to the end (``complete``) or as a stream of chunks
(``open_stream``), each metered exactly once.

Owns: starting one engine stream per choice (counted as interactive ``Traffic`` while it runs), merging
the choices' deltas, counting tokens (``Tally``), and the usage row written in a ``finally`` (shielded, so a
client that disconnects mid-stream is still billed for what was generated, and never twice). Does not own:
building calls (``requests``), JSON shapes (``responses``) or SSE framing (the api).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from tenfold.billing.meter import UsageEntry
from tenfold.context import Principal, ServerContext
from tenfold.inference import responses, tools
from tenfold.inference.requests import Call


class Tally:
    """Token counts of one request over its n choices: the prompt once, completion tokens summed."""

    def __init__(self, n: int = 1) -> None:
        self.prompt = self.cached = 0
        self.completions = [0] * n
        self.finishes: list[str | None] = [None] * n

    def add(self, d, index: int = 0) -> None:
        if d.prompt_tokens and (index == 0 or not self.prompt):
            self.prompt, self.cached = d.prompt_tokens, d.cached_tokens
        self.completions[index] = max(self.completions[index] + len(d.token_ids), d.completion_tokens)
        if d.finish_reason:
            self.finishes[index] = d.finish_reason

    @property
    def completion(self) -> int:
        return sum(self.completions)

    def usage(self) -> dict:
        return responses.usage_body(self.prompt, self.cached, self.completion)


async def meter(c: ServerContext, p: Principal, call: Call, t: Tally) -> None:
    # Shielded: a client that disconnects cancels this task, but its usage row must still be written.
    route = call.route
    await asyncio.shield(asyncio.to_thread(c.meter.record, UsageEntry(
        request_id=call.request_id, organization_id=p.organization_id, api_key_id=p.api_key_id,
        endpoint="chat.completions" if call.kind == "chat" else "completions", model=call.model,
        base_model=route.base_model, adapter_digest=route.adapter.digest if route.adapter else None,
        checkpoint=route.checkpoint, prompt_tokens=t.prompt or len(call.gen.prompt_token_ids),
        cached_tokens=t.cached, completion_tokens=t.completion, finish_reason=t.finishes[0] or "abort",
        deployment_id=route.deployment_id, batch_id=call.batch_id, started_at=call.started_at)))


async def _close(stream) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


def _close_soon(stream) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        asyncio.ensure_future(aclose())


def _start(c: ServerContext, call: Call) -> list:
    """Count the request as traffic and start one engine stream per choice; on failure, undo both."""
    if call.interactive:
        c.traffic.enter()
    streams = []
    try:
        for gen in call.gens:
            streams.append(call.engine.generate(gen))  # validates eagerly: bad requests raise here
    except BaseException:
        if call.interactive:
            c.traffic.leave()
        for s in streams:
            _close_soon(s)
        raise
    return streams


def _leave(c: ServerContext, call: Call) -> None:
    if call.interactive:
        c.traffic.leave()


async def _merged(streams: list) -> AsyncIterator[tuple[int, object]]:
    """``(choice index, delta)`` from every choice's stream, in arrival order."""
    if len(streams) == 1:
        async for d in streams[0]:
            yield 0, d
        return
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(i: int, stream) -> None:
        try:
            async for d in stream:
                queue.put_nowait((i, d))
            queue.put_nowait((i, None))
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            queue.put_nowait((i, e))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        done = 0
        while done < len(streams):
            i, item = await queue.get()
            if item is None:
                done += 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield i, item
    finally:
        for t in tasks:
            t.cancel()


async def complete(c: ServerContext, p: Principal, call: Call) -> dict:
    """Run a request to the end and return the OpenAI response body; metered exactly once."""
    created = int(time.time())
    n = len(call.gens)
    tally = Tally(n)
    streams = _start(c, call)
    parts: list[list[str]] = [[] for _ in range(n)]
    entries: list[list] = [[] for _ in range(n)]
    try:
        async for i, d in _merged(streams):
            tally.add(d, i)
            parts[i].append(d.text)
            entries[i].extend(d.logprobs or ())
    finally:
        _leave(c, call)
        for s in streams:
            await _close(s)
        await meter(c, p, call, tally)
    choices = []
    for i in range(n):
        lp = responses.LogprobShaper(call.kind).shape(entries[i]) if call.logprobs is not None else None
        text, calls, finish = "".join(parts[i]), None, tally.finishes[i]
        if call.tools is not None:
            text, calls, finish = tools.shape(text, finish)
        choices.append(responses.choice(call.kind, text, finish, delta=False, index=i, logprobs=lp,
                                        tool_calls=calls))
    return responses.response_body(call.kind, request_id=call.request_id, created=created, model=call.model,
                                   choices=choices, usage=tally.usage())


@dataclass
class OpenStream:
    """The response chunks (dicts, in order; an error mid-stream is raised from the iterator after the chunks
    sent so far) plus ``finish``, the idempotent clean-up (close the engine streams, meter once) that also
    runs as the response's background task, so a stream the server never iterated is still billed."""

    chunks: AsyncIterator[dict]
    finish: Callable[[], Awaitable[None]]


async def open_stream(c: ServerContext, p: Principal, call: Call) -> OpenStream:
    """Start a streaming request. The first delta is pulled before returning, so an engine error is still a
    proper error response; metered exactly once when the chunks end or are closed."""
    created = int(time.time())
    n = len(call.gens)
    tally = Tally(n)
    shapers = [responses.LogprobShaper(call.kind) for _ in range(n)]
    streams = _start(c, call)
    merged = _merged(streams)
    finished = False

    async def finish() -> None:
        nonlocal finished
        if finished:
            return
        finished = True
        _leave(c, call)
        try:
            await merged.aclose()
            for s in streams:
                await _close(s)
        finally:
            await meter(c, p, call, tally)

    try:
        first = await anext(merged, None)
    except BaseException:
        await finish()
        raise

    calls = [tools.CallStream() for _ in range(n)] if call.tools is not None else None

    def chunk(text: str, finish_reason: str | None, *, index: int = 0, is_first: bool = False, logprobs=None,
              tool_calls: list[dict] | None = None) -> dict:
        choice = responses.choice(call.kind, text, finish_reason, delta=True, first=is_first, index=index,
                                  logprobs=logprobs, tool_calls=tool_calls)
        return responses.chunk_body(call.kind, request_id=call.request_id, created=created, model=call.model,
                                    choices=[choice], with_usage=call.include_usage)

    async def chunks() -> AsyncIterator[dict]:
        try:
            if call.kind == "chat":
                for i in range(n):
                    yield chunk("", None, index=i, is_first=True)
            pending = [first] if first is not None else []
            while True:
                item = pending.pop() if pending else await anext(merged, None)
                if item is None:
                    break
                i, d = item
                tally.add(d, i)
                if calls is not None:  # under tools: text streams as content, each finished call as deltas
                    text, deltas = calls[i].feed(d.text)
                    finish_reason = d.finish_reason
                    if finish_reason:
                        rest, finish_reason = calls[i].finish(finish_reason)
                        text += rest
                    lp = shapers[i].shape(d.logprobs) if call.logprobs is not None else None
                    for entry in deltas:
                        yield chunk("", None, index=i, tool_calls=[entry])
                    if text or finish_reason or lp:
                        yield chunk(text, finish_reason, index=i, logprobs=lp)
                elif d.text or d.finish_reason or d.logprobs:
                    lp = shapers[i].shape(d.logprobs) if call.logprobs is not None else None
                    yield chunk(d.text, d.finish_reason, index=i, logprobs=lp)
            if call.include_usage:
                yield responses.chunk_body(call.kind, request_id=call.request_id, created=created, model=call.model,
                                           choices=[], usage=tally.usage(), with_usage=True)
        finally:
            await finish()

    return OpenStream(chunks(), finish)
