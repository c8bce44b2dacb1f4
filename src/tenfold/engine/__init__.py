"""Serving engines behind the ``Engine`` interface of ``tenfold.engine.types``.

Owns: ``create_engine``, which resolves the base model and builds the default engine. Heavy modules
(torch, transformers) load only when an engine is created.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tenfold.engine.types import (
    AdapterError,
    AdapterRef,
    Engine,
    EngineError,
    EngineOverloaded,
    GenerationDelta,
    GenerationRequest,
    SamplingParams,
)

if TYPE_CHECKING:
    from tenfold.config import Settings


def create_engine(settings: "Settings", base_model: str) -> Engine:
    """An engine (not started yet) for ``base_model``, resolved/converted in ``settings.models_dir``.

    Resolving may convert the embedded GGUF on first use (about 20 s); call it off the event loop.
    """
    from tenfold.engine.async_engine import EngineOptions, LocalEngine
    from tenfold.models.registry import resolve_base_model

    path = resolve_base_model(base_model, models_dir=settings.models_dir)
    return LocalEngine(path, base_model, EngineOptions(
        kv_cache_bytes=settings.kv_cache_bytes, block_size=settings.kv_block_size, max_num_seqs=settings.max_num_seqs,
        max_batched_tokens=settings.max_batched_tokens,
        max_background_tokens=settings.max_background_tokens, max_waiting=settings.max_waiting_requests,
        adapter_slots=settings.max_resident_adapters, host_adapters=settings.host_adapters,
        torch_threads=settings.torch_threads, device=settings.engine_device, lora_dtype=settings.lora_dtype,
        dtype=settings.engine_dtype, format_cache=str(settings.format_cache_file)))


__all__ = [
    "AdapterError",
    "AdapterRef",
    "Engine",
    "EngineError",
    "EngineOverloaded",
    "GenerationDelta",
    "GenerationRequest",
    "SamplingParams",
    "create_engine",
]
