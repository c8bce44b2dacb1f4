"""The simple engine: transformers + PEFT, one background thread, requests interleaved step by step.

Owns: loading the base model, the engine thread (admission, one forward per active request per
iteration with its own ``DynamicCache`` and its own adapter, finishing), and the asyncio front
(``generate`` streams ``GenerationDelta``s). Correct rather than fast: no batching across requests; a
finished request's KV goes to the prefix cache (``prefix_cache``) and later prompts that share its
prefix (same adapter, same organization) skip recomputing it, reported as ``cached_tokens``. Does not own:
sampling (``sampler``), text and stop strings (``detokenize``), adapter residency (``lora``), chat
templates (``chat``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
from collections.abc import AsyncIterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import torch

from tenfold.engine.chat import eos_token_ids, render_chat
from tenfold.engine.detokenize import IncrementalDetokenizer, StopStringMatcher
from tenfold.engine.lora import AdapterManager
from tenfold.engine.prefix_cache import PrefixCache
from tenfold.engine.sampler import make_generator, sample_next, validate_sampling
from tenfold.engine.sequence import RequestState
from tenfold.engine.types import AdapterRef, EngineError, GenerationDelta, GenerationRequest

log = logging.getLogger(__name__)
_STOP = object()


class SimpleEngine:
    """An ``Engine`` for one base model folder; see the module docstring."""

    def __init__(
        self, model_path: Path | str, base_model_name: str, *, max_resident_adapters: int = 32, torch_threads: int = 0,
        prefix_cache_tokens: int = 4096,
    ) -> None:
        self.model_path = Path(model_path)
        self.base_model = base_model_name
        config_file = self.model_path / "config.json"
        if not config_file.is_file():
            raise EngineError(f"base model folder {self.model_path} has no config.json")
        self.max_context = int(json.loads(config_file.read_text()).get("max_position_embeddings") or 2048)
        if max_resident_adapters < 1:
            raise EngineError(f"max_resident_adapters must be >= 1, got {max_resident_adapters}")
        self._max_resident = max_resident_adapters
        self._torch_threads = torch_threads
        self._inbox: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._tokenizer: Any = None  # used by the asyncio side (encode, chat templates)
        self._thread_tokenizer: Any = None  # a second instance for the engine thread (Rust tokenizers are not shared)
        self._model: Any = None
        self._adapters: AdapterManager | None = None
        self._vocab_size = 0
        self.eos_token_ids: set[int] = set()
        self._active: list[RequestState] = []
        self._prefix = PrefixCache(max_tokens=prefix_cache_tokens)

    # ---- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        if self._thread is not None:
            return
        await asyncio.to_thread(self._load)
        self._thread = threading.Thread(target=self._run, name=f"tenfold-engine-{self.base_model}", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        from tenfold.models.registry import load_causal_lm, load_tokenizer

        if self._torch_threads > 0:
            torch.set_num_threads(self._torch_threads)
        self._tokenizer = load_tokenizer(self.model_path)
        self._thread_tokenizer = load_tokenizer(self.model_path)
        self._model = load_causal_lm(self.model_path, dtype=torch.float32)
        self._vocab_size = int(self._model.config.vocab_size)
        self.eos_token_ids = eos_token_ids(self._tokenizer, self._model.generation_config)
        self._adapters = AdapterManager(
            self._model, model_path=self.model_path, base_name=self.base_model, max_resident=self._max_resident
        )

    async def stop(self) -> None:
        if self._thread is None or self._stopped:
            return
        self._stopped = True
        self._inbox.put(_STOP)
        await asyncio.to_thread(self._thread.join)

    def _require_running(self) -> None:
        if self._thread is None:
            raise EngineError("the engine is not started; await engine.start() first")
        if self._stopped:
            raise EngineError("the engine is stopped")

    # ---- prompts -------------------------------------------------------------------------------
    def chat_prompt(self, messages: list[dict], *, add_generation_prompt: bool = True) -> list[int]:
        self._require_running()
        return render_chat(self._tokenizer, messages, add_generation_prompt=add_generation_prompt)

    def encode(self, text: str) -> list[int]:
        self._require_running()
        return list(self._tokenizer.encode(text, add_special_tokens=False))

    # ---- adapters ------------------------------------------------------------------------------
    async def load_adapter(self, adapter: AdapterRef) -> None:
        self._require_running()
        await asyncio.to_thread(self._adapters.validate, adapter)  # file checks off the engine thread
        future: Future = Future()
        self._inbox.put(("load", adapter, future))
        await asyncio.wrap_future(future)

    def resident_adapters(self) -> list[str]:
        """Digests of resident adapters, least recently used first (a snapshot)."""
        return self._adapters.resident() if self._adapters else []

    # ---- generation ----------------------------------------------------------------------------
    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        """Validate now (raising ``EngineError``), then stream deltas from the engine thread."""
        self._require_running()
        validate_sampling(request.sampling)
        prompt = request.prompt_token_ids
        if not prompt:
            raise EngineError("the prompt is empty")
        if any(not isinstance(t, int) or t < 0 or t >= self._vocab_size for t in prompt):
            raise EngineError(f"prompt token ids must be integers in [0, {self._vocab_size})")
        total = len(prompt) + request.sampling.max_tokens
        if total > self.max_context:
            raise EngineError(
                f"this model's maximum context length is {self.max_context} tokens, but the request needs "
                f"{total} ({len(prompt)} prompt + {request.sampling.max_tokens} max_tokens); "
                "shorten the prompt or lower max_tokens"
            )
        return self._stream(request)

    async def _stream(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        state = RequestState(
            request=request,
            loop=asyncio.get_running_loop(),
            queue=asyncio.Queue(),
            detokenizer=IncrementalDetokenizer(self._thread_tokenizer, request.prompt_token_ids),
            stops=StopStringMatcher(request.sampling.stop),
        )
        self._inbox.put(("generate", state))
        try:
            while True:
                item = await state.queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.finish_reason is not None:
                    return
        finally:
            state.cancelled.set()  # the engine drops it on its next iteration (no-op when finished)

    # ---- engine thread -------------------------------------------------------------------------
    def _run(self) -> None:
        if self._torch_threads > 0:
            torch.set_num_threads(self._torch_threads)
        with torch.inference_mode():
            while True:
                try:
                    if not self._drain_inbox(block=not self._active):
                        break
                    # One forward per request per iteration, grouped by adapter so switches stay few.
                    for state in sorted(self._active, key=lambda st: st.digest or ""):
                        if state.cancelled.is_set() and not state.finished:
                            self._retire(state)
                            continue
                        self._step_safely(state)
                except Exception:  # noqa: BLE001 - the engine thread must survive anything
                    log.exception("engine iteration failed; continuing")
        for state in self._active:
            state.finish("abort")
        self._active.clear()
        self._fail_pending()

    def _drain_inbox(self, *, block: bool) -> bool:
        """Handle queued commands; return False on stop."""
        while True:
            try:
                item = self._inbox.get(block=block)
            except queue.Empty:
                return True
            block = False
            if item is _STOP:
                return False
            if item[0] == "generate":
                self._admit(item[1])
            elif item[0] == "load":
                _, ref, future = item
                try:
                    self._adapters.load(ref)
                    future.set_result(None)
                except BaseException as exc:  # noqa: BLE001 - delivered to the caller
                    future.set_exception(exc)

    def _fail_pending(self) -> None:
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return
            if item is _STOP:
                continue
            if item[0] == "generate":
                item[1].fail(EngineError("the engine stopped"))
            elif item[0] == "load":
                item[2].set_exception(EngineError("the engine stopped"))

    def _admit(self, state: RequestState) -> None:
        if state.cancelled.is_set():
            return
        try:
            ref = state.request.adapter
            if ref is not None:
                self._adapters.load(ref)  # no-op when resident; reloads an evicted adapter
                self._adapters.acquire(ref.digest)
                state.acquired = ref.digest
            state.generator = make_generator(state.request.sampling.seed)
        except BaseException as exc:  # noqa: BLE001 - one bad request must not kill the thread
            self._release(state)
            state.fail(exc)
            return
        self._active.append(state)

    def _step_safely(self, state: RequestState) -> None:
        try:
            self._step(state)
        except BaseException as exc:  # noqa: BLE001
            log.exception("request %s failed", state.request.request_id)
            state.cache = None  # possibly half-updated: never offered to the prefix cache
            state.fail(exc)
        if state.finished:
            self._retire(state)

    def _retire(self, state: RequestState) -> None:
        if state in self._active:
            self._active.remove(state)
        if state.cache is not None:
            self._remember_prefix(state)
        state.cache = None
        self._release(state)

    def _release(self, state: RequestState) -> None:
        if state.acquired is not None:
            self._adapters.release(state.acquired)
            state.acquired = None
            self._adapters.evict_over_limit()

    @staticmethod
    def _namespace(state: RequestState) -> str:
        return f"{state.digest or 'base'}|{state.request.cache_salt}"

    def _remember_prefix(self, state: RequestState) -> None:
        """Offer the KV of prompt + generated tokens (all but the last, which was never fed) to the cache."""
        length = state.cache.get_seq_length()
        tokens = (list(state.request.prompt_token_ids) + state.generated)[:length]
        kv = [(layer.keys, layer.values) for layer in state.cache.layers]
        self._prefix.store(self._namespace(state), tokens, kv)

    def _step(self, state: RequestState) -> None:
        """One forward for ``state``: the prefill, or one decode token; then sample and emit."""
        if state.cache is None:
            from transformers import DynamicCache

            prompt = list(state.request.prompt_token_ids)
            hit, kv = self._prefix.lookup(self._namespace(state), prompt)
            state.cache = DynamicCache(config=self._model.config)
            for layer_idx, (k, v) in enumerate(kv or ()):
                state.cache.update(k, v, layer_idx)
            state.cached_tokens = hit
            input_ids = torch.tensor([prompt[hit:]], dtype=torch.long)
        else:
            input_ids = torch.tensor([[state.generated[-1]]], dtype=torch.long)
        output = self._adapters.model(
            input_ids=input_ids,
            past_key_values=state.cache,
            use_cache=True,
            logits_to_keep=1,
            **self._adapters.forward_kwargs(state.digest),
        )
        token = sample_next(output.logits[0, -1], state.request.sampling, state.generator)
        state.generated.append(token)
        state.pending_ids.append(token)
        if token in self.eos_token_ids:
            self._finish(state, "stop", "")
            return
        text, stopped = state.stops.push(state.detokenizer.add(token))
        if stopped:
            state.finish("stop", text)
        elif len(state.generated) >= state.request.sampling.max_tokens:
            self._finish(state, "length", text)
        else:
            state.emit(text)

    def _finish(self, state: RequestState, reason: str, text: str) -> None:
        """Finish without a stop string so far: flush held-back text (a stop may still complete in it)."""
        tail, stopped = state.stops.push(state.detokenizer.flush())
        if stopped:
            state.finish("stop", text + tail)
        else:
            state.finish(reason, text + tail + state.stops.flush())
