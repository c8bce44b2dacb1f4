"""One request's state inside the engine (no torch imports, so the scheduler is testable without tensors).

Owns: the token ids (prompt, then generated), how many of them have KV in the cache, the block table,
the prefix-cache chain seed, status and finish reason. Does not own: text, stop strings or delivery to
the client (``async_engine``), or sampling state (``sampler``).
"""

from __future__ import annotations

import enum
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from tenfold.engine.types import SamplingParams

_ids = itertools.count()


class Status(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(eq=False)
class Sequence:
    request_id: str
    prompt_token_ids: list[int]
    sampling: SamplingParams
    adapter_digest: str | None = None
    organization: str = ""  # who asked (set by the server): the prefix-cache namespace and metrics label
    priority: int = 0
    hash_seed: int = 0
    seq_id: int = field(default_factory=lambda: next(_ids))
    arrival: float = field(default_factory=time.monotonic)
    output_token_ids: list[int] = field(default_factory=list)
    status: Status = Status.WAITING
    num_computed: int = 0  # tokens whose KV is in this sequence's blocks
    block_table: list[int] = field(default_factory=list)
    block_hashes: list[int] = field(default_factory=list)
    cached_tokens: int | None = None  # prefix-cache hit at first admission (what usage reports)
    num_preemptions: int = 0
    aborted: bool = False
    finish_reason: str | None = None
    state: Any = None  # the front end's per-request handle (sampler generator, output stream)

    @property
    def cache_namespace(self) -> str:
        """Prefix-cache entries are shared only between sequences of one adapter (by content) and organization."""
        return f"{self.adapter_digest or 'base'}|{self.organization}"

    @property
    def all_token_ids(self) -> list[int]:
        return self.prompt_token_ids + self.output_token_ids

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_token_ids) + len(self.output_token_ids)

    @property
    def num_uncomputed(self) -> int:
        """Tokens to feed before the next token can be sampled (prompt/recompute chunk, or the last output)."""
        return self.num_tokens - self.num_computed

    @property
    def is_prefilling(self) -> bool:
        return self.num_uncomputed > 1

    @property
    def sort_key(self) -> tuple[int, float, int]:
        """Who goes first: interactive before batch, then oldest first."""
        return (self.priority, self.arrival, self.seq_id)
