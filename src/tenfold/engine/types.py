"""Engine-facing dataclasses and the ``Engine`` interface every backend implements.

Owns: what the api hands to an engine (prompt tokens, sampling, adapter reference) and what comes back
(text deltas, finish reason, token counts). Does not own: HTTP shapes (``tenfold.types``) or ORM rows.
No torch here, so the api can import it cheaply.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


class EngineError(Exception):
    """A request the engine cannot serve (bad sampling values, prompt too long)."""


class EngineOverloaded(EngineError):
    """The engine's waiting queue is full; the api answers 429 with ``Retry-After``."""

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AdapterError(EngineError):
    """An adapter that cannot be loaded onto this base model (wrong base, no matching modules, bad files)."""


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    top_k: int = 0  # 0 or -1: off
    stop_token_ids: tuple[int, ...] = ()
    logprobs: int | None = None  # None: off; N >= 0: the sampled token's logprob plus the N most likely
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    ignore_eos: bool = False


@dataclass(frozen=True)
class TokenLogprob:
    token_id: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


@dataclass(frozen=True)
class AdapterRef:
    """A PEFT adapter folder on disk, identified by the digest of its contents."""

    digest: str
    path: Path


@dataclass(frozen=True)
class GenerationRequest:
    request_id: str
    prompt_token_ids: list[int]
    sampling: SamplingParams
    adapter: AdapterRef | None = None
    # Namespace for prefix caching, set by the server (the organization), never by the client.
    cache_salt: str = ""
    # Scheduling class: 0 is interactive; higher numbers (the Batch API uses 1) run only in spare capacity.
    priority: int = 0


@dataclass
class GenerationDelta:
    """One streamed piece. The last delta of a request has ``finish_reason`` set and final counts."""

    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] | None = None  # one per token id, when requested
    finish_reason: str | None = None  # "stop" | "length" | "abort"
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0


class Engine(Protocol):
    base_model: str
    max_context: int

    def chat_prompt(self, messages: list[dict], *, add_generation_prompt: bool = True) -> list[int]:
        """Token ids of ``messages`` rendered with the base model's chat template."""

    def encode(self, text: str) -> list[int]: ...

    async def load_adapter(self, adapter: AdapterRef) -> None:
        """Make the adapter resident; raise ``AdapterError`` with a helpful message if it cannot serve."""

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        """Stream deltas; the final one carries ``finish_reason`` and usage counts.

        Closing the iterator early (client went away) aborts the request and frees its resources.
        """

    async def start(self) -> None: ...

    async def stop(self) -> None: ...
