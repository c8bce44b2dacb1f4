"""Prometheus metrics of the engines in this process, exported on the api's ``/metrics``.

Owns: metric names and labels. Token counters carry ``organization`` and ``adapter`` labels (what
billing reconciles against); gauges describe the engine's load. Does not own: the HTTP route.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

RUNNING = Gauge("tenfold_engine_running_sequences", "Sequences in the running batch", ["base_model"])
WAITING = Gauge("tenfold_engine_waiting_sequences", "Sequences waiting for admission", ["base_model"])
KV_USED = Gauge("tenfold_engine_kv_blocks_used", "KV cache blocks held by sequences", ["base_model"])
KV_TOTAL = Gauge("tenfold_engine_kv_blocks_total", "KV cache blocks in the pool", ["base_model"])
TOKENS_PER_SECOND = Gauge("tenfold_engine_tokens_per_second",
                          "Tokens processed per second (prompt and generated), smoothed over recent steps",
                          ["base_model"])
PROMPT_TOKENS = Counter("tenfold_engine_prompt_tokens", "Prompt tokens of admitted requests",
                        ["base_model", "organization", "adapter"])
CACHED_TOKENS = Counter("tenfold_engine_prefix_cache_hit_tokens", "Prompt tokens served from the prefix cache",
                        ["base_model", "organization", "adapter"])
GENERATED_TOKENS = Counter("tenfold_engine_generation_tokens", "Generated tokens",
                           ["base_model", "organization", "adapter"])
PREEMPTIONS = Counter("tenfold_engine_preemptions", "Sequences preempted for lack of KV blocks", ["base_model"])
ADAPTER_LOADS = Counter("tenfold_engine_adapter_loads", "Adapters read from disk into host memory", ["base_model"])
ADAPTER_EVICTIONS = Counter("tenfold_engine_adapter_evictions", "Adapters evicted from a tier",
                            ["base_model", "tier"])
INTERRUPTED = Counter("tenfold_engine_interrupted_steps",
                      "Batch-priority steps stopped between layers because interactive work arrived", ["base_model"])
GRAMMAR_COMPILES = Counter("tenfold_engine_grammar_compiles",
                           "Structured-output grammars compiled (cache misses)", ["base_model"])
GRAMMAR_COMPILE_SECONDS = Counter("tenfold_engine_grammar_compile_seconds",
                                  "Time spent compiling structured-output grammars", ["base_model"])
GRAMMAR_CACHE_HITS = Counter("tenfold_engine_grammar_cache_hits",
                             "Structured-output requests whose grammar was already compiled", ["base_model"])
NUMBER_FORMAT = Gauge("tenfold_engine_number_format",
                      "1 for the number format the engine's base linears and KV cache run in (TENFOLD_ENGINE_DTYPE)",
                      ["base_model", "dtype"])
REJECTED = Counter("tenfold_engine_rejected_requests", "Requests refused because the queue was full",
                   ["base_model"])


class EngineMetrics:
    """The metrics above bound to one base model."""

    def __init__(self, base_model: str) -> None:
        self.base_model = base_model
        self.running = RUNNING.labels(base_model)
        self.waiting = WAITING.labels(base_model)
        self.kv_used = KV_USED.labels(base_model)
        self.kv_total = KV_TOTAL.labels(base_model)
        self.tokens_per_second = TOKENS_PER_SECOND.labels(base_model)
        self.preemptions = PREEMPTIONS.labels(base_model)
        self.adapter_loads = ADAPTER_LOADS.labels(base_model)
        self.rejected = REJECTED.labels(base_model)
        self.interrupted = INTERRUPTED.labels(base_model)
        self.grammar_hits = GRAMMAR_CACHE_HITS.labels(base_model)

    def grammar_compiled(self, seconds: float) -> None:
        GRAMMAR_COMPILES.labels(self.base_model).inc()
        GRAMMAR_COMPILE_SECONDS.labels(self.base_model).inc(seconds)

    def number_format(self, dtype: str) -> None:
        NUMBER_FORMAT.labels(self.base_model, dtype).set(1)

    def evicted(self, tier: str) -> None:
        ADAPTER_EVICTIONS.labels(self.base_model, tier).inc()

    def request_tokens(self, *, organization: str, adapter: str | None, prompt: int, cached: int) -> None:
        labels = (self.base_model, organization or "-", adapter or "base")
        PROMPT_TOKENS.labels(*labels).inc(prompt)
        CACHED_TOKENS.labels(*labels).inc(cached)

    def generated(self, *, organization: str, adapter: str | None, n: int = 1) -> None:
        GENERATED_TOKENS.labels(self.base_model, organization or "-", adapter or "base").inc(n)
