"""Helpers shared by the engine tests: adapters on disk, running an engine, collecting deltas."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from pathlib import Path

import torch

from tenfold.engine.async_engine import EngineOptions, LocalEngine
from tenfold.engine.types import AdapterRef, GenerationDelta, GenerationRequest, SamplingParams
from tenfold.inference.prompts import Prompter
from tenfold.models.registry import load_causal_lm

TINY = "tiny-random-llama"


def make_adapter(base_path: Path, out: Path, *, seed: int, base_name: str = TINY, **lora_kwargs) -> AdapterRef:
    """Save a real PEFT LoRA adapter for the tiny model (random non-zero B, so it changes outputs)."""
    from peft import LoraConfig, get_peft_model

    options = {"r": 4, "target_modules": "all-linear", "init_lora_weights": False, **lora_kwargs}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = get_peft_model(load_causal_lm(base_path), LoraConfig(**options))
    model.peft_config["default"].base_model_name_or_path = base_name
    model.save_pretrained(str(out), save_embedding_layers=False)
    return AdapterRef(digest=f"digest-{out.name}", path=out)


@functools.lru_cache(maxsize=4)
def _prompter(path: Path) -> Prompter:
    return Prompter(path)


def prompter(engine: LocalEngine) -> Prompter:
    """The api-side chat template and tokenizer of the engine's model (prompts reach engines as token ids)."""
    return _prompter(engine.model_path)


def run_with_engine(
    tiny_path: Path, body: Callable[[LocalEngine], Awaitable], **options
):
    """Start a ``LocalEngine`` on the tiny model, run ``body(engine)``, stop it; return body's result."""

    async def main():
        engine = LocalEngine(tiny_path, TINY, EngineOptions(**{"torch_threads": 1, "kv_cache_bytes": 32 << 20, "dtype": "float32",
                                                                 **options}))
        await engine.start()
        try:
            return await body(engine)
        finally:
            await engine.stop()

    return asyncio.run(main())


async def collect(engine: LocalEngine, prompt: list[int], adapter: AdapterRef | None = None, rid: str = "r", **sampling):
    """All deltas of one request."""
    organization = sampling.pop("organization", "")
    priority = sampling.pop("priority", 0)
    request = GenerationRequest(rid, prompt, SamplingParams(**sampling), adapter=adapter, organization=organization,
                                priority=priority)
    return [delta async for delta in engine.generate(request)]


def text_of(deltas: list[GenerationDelta]) -> str:
    return "".join(d.text for d in deltas)


def ids_of(deltas: list[GenerationDelta]) -> list[int]:
    return [t for d in deltas for t in d.token_ids]
