"""Engine-facing dataclasses and the ``Engine`` interface every backend implements.

Owns: what the api hands to an engine (prompt token ids, sampling, adapter reference, the organization) and
what comes back (text deltas with token text for logprobs, finish reason, token counts), all plain data, so
an engine in another process (a replica over HTTP, vLLM) can implement the same interface. Engine errors
are domain errors (``tenfold.errors``): a request the engine cannot serve is an ``InvalidRequest``, a full
queue a ``RateLimited``. Does not own: chat templates and tokenizing prompts (the api side,
``tenfold.inference.prompts``), HTTP shapes (``tenfold.types``) or ORM rows. No torch here.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tenfold.errors import InvalidRequest, RateLimited


class EngineError(InvalidRequest):
    """A request the engine cannot serve (bad sampling values, prompt too long)."""


class EngineOverloaded(RateLimited):
    """The engine's waiting queue is full; the api answers 429 with ``Retry-After``."""

    default_code = "engine_overloaded"

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message, retry_after=retry_after)


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
    top: tuple[tuple[int, float], ...] = ()  # (token id, logprob) of the most likely alternatives
    text: str = ""  # the token's text; the engine fills it (and ``top_text``) before delivering a delta
    top_text: tuple[str, ...] = ()


@dataclass(frozen=True)
class Constraint:
    """What the output must match, decoded under a token mask: a JSON schema (``value`` its JSON text; JSON
    mode is the schema ``{"type": "object"}``) or a grammar in llguidance's Lark dialect (which may embed
    JSON schemas with ``%json``). Plain strings, so an engine in another process receives it as is."""

    kind: str  # "json_schema" | "lark"
    value: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(f"{self.kind}\0{self.value}".encode()).hexdigest()


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
    # The organization asking, set by the server, never by the client: prefix-cache entries are shared only
    # within it (with the adapter's content digest), and metrics count tokens by it.
    organization: str = ""
    # Scheduling class: 0 is interactive; higher numbers (the Batch API uses 1) run only in spare capacity.
    priority: int = 0
    # Structured output: every sampled token keeps the output a prefix of this grammar's language; the
    # request finishes ("stop") when the grammar is complete.
    constraint: Constraint | None = None


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
    """Everything the api and its services ask of an engine."""

    base_model: str
    max_context: int  # prompt plus generated tokens of one request

    async def load_adapter(self, adapter: AdapterRef) -> None:
        """Make the adapter resident; raise ``AdapterError`` with a helpful message if it cannot serve."""

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        """Stream deltas; the final one carries ``finish_reason`` and usage counts.

        Closing the iterator early (client went away) aborts the request and frees its resources.
        """

    async def start(self) -> None: ...

    async def stop(self) -> None: ...
