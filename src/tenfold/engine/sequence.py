"""Per-request state of the simple engine (no torch imports).

Owns: what the engine thread keeps for one request between steps (tokens so far, KV cache handle,
sampler generator, detokenizer, stop matcher, the asyncio queue its deltas go to) and delivering items
to the asyncio side thread-safely. Does not own: the forward pass (``simple``) or sampling (``sampler``).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

from tenfold.engine.detokenize import IncrementalDetokenizer, StopStringMatcher
from tenfold.engine.types import GenerationDelta, GenerationRequest


@dataclass
class RequestState:
    request: GenerationRequest
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue
    detokenizer: IncrementalDetokenizer
    stops: StopStringMatcher
    generator: Any = None  # torch.Generator, made on the engine thread
    cache: Any = None  # transformers DynamicCache after prefill
    generated: list[int] = field(default_factory=list)
    pending_ids: list[int] = field(default_factory=list)  # generated ids not yet sent in a delta
    cached_tokens: int = 0
    acquired: str | None = None  # adapter digest this request holds a reference on
    finished: bool = False
    cancelled: threading.Event = field(default_factory=threading.Event)

    @property
    def digest(self) -> str | None:
        return self.request.adapter.digest if self.request.adapter else None

    def deliver(self, item: GenerationDelta | BaseException) -> None:
        """Hand ``item`` to the consumer's event loop; a closed loop means the consumer is gone."""
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:
            self.cancelled.set()

    def emit(self, text: str) -> None:
        if text:
            self.deliver(GenerationDelta(text=text, token_ids=self.pending_ids))
            self.pending_ids = []

    def finish(self, reason: str, text: str = "") -> None:
        self.finished = True
        self.deliver(
            GenerationDelta(
                text=text,
                token_ids=self.pending_ids,
                finish_reason=reason,
                prompt_tokens=len(self.request.prompt_token_ids),
                cached_tokens=self.cached_tokens,
                completion_tokens=len(self.generated),
            )
        )
        self.pending_ids = []

    def fail(self, exc: BaseException) -> None:
        self.finished = True
        self.deliver(exc)
