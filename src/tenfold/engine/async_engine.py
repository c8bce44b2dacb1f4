"""The tenfold engine: an asyncio front over one engine thread that runs continuous-batching steps.

Owns: ``LocalEngine`` (the ``Engine`` interface): loading the model, sizing the KV pool from a byte
budget, validating requests, the bounded waiting queue (``EngineOverloaded`` → 429), the step loop
(schedule → run → sample → finish), a request's grammar matcher (copied from the cache or compiled in a
worker thread; a complete grammar finishes the request), turning tokens into text deltas with stop strings, eos and stop
token ids, the text of tokens reported with logprobs, cancelling sequences whose clients went away, and
updating metrics. Prompts arrive as token ids (chat templates are the api's, ``tenfold.inference.prompts``).
Does not own: the
forward (``model``/``runner``), who runs (``scheduler``), KV/prefix accounting (``kv_cache``) or
adapter residency (``lora``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tenfold.engine.detokenize import (
    IncrementalDetokenizer,
    StopStringMatcher,
    eos_token_ids,
)
from tenfold.engine.grammar import Grammars
from tenfold.engine.kv_cache import BlockManager, namespace_seed
from tenfold.engine.lora import AdapterStore
from tenfold.engine.metrics import EngineMetrics
from tenfold.engine.model import LlamaModel, StepInterrupted
from tenfold.engine.number_format import FORMATS, FormatChoice
from tenfold.engine.number_format import choose as choose_format
from tenfold.engine.runner import ModelRunner
from tenfold.engine.sampler import make_generator, validate_sampling
from tenfold.engine.scheduler import Scheduler
from tenfold.engine.sequence import Sequence
from tenfold.engine.shapes import model_shape, read_config
from tenfold.engine.types import (
    AdapterRef,
    Constraint,
    EngineError,
    EngineOverloaded,
    GenerationDelta,
    GenerationRequest,
    TokenLogprob,
)

log = logging.getLogger(__name__)
_STOP = object()


LORA_DTYPES = {"auto": None, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class EngineOptions:
    kv_cache_bytes: int = 1 << 30
    block_size: int = 16
    max_num_seqs: int = 64
    max_batched_tokens: int = 512
    max_background_tokens: int = 64  # per step, for batch-priority work
    max_waiting: int = 1024
    adapter_slots: int = 64
    host_adapters: int = 256
    torch_threads: int = 0
    device: str = "auto"  # "auto": cuda when available, else cpu
    # number format (engine.number_format): "auto" measures on CPU (bfloat16 where it wins), bfloat16 on GPUs
    dtype: str = "auto"
    format_cache: str = ""  # where "auto" caches its measurement per CPU ("" = measure at every start)
    enable_prefix_caching: bool = True  # always on when serving; benchmarks turn it off to measure its cost
    # dtype of the adapter slot stacks: "auto" = the number format's; "bfloat16"/"float16" halve the memory and
    # the bytes a decode step reads over many adapters (products still accumulate in float32 on CPU)
    lora_dtype: str = "auto"

    def __post_init__(self) -> None:
        if self.lora_dtype not in LORA_DTYPES:
            raise ValueError(f"lora_dtype must be one of {sorted(LORA_DTYPES)}, got {self.lora_dtype!r}")
        if self.dtype != "auto" and self.dtype not in FORMATS:
            raise ValueError(f"dtype must be auto or one of {sorted(FORMATS)}, got {self.dtype!r}")


class _Outbox:
    """Deltas the engine thread produced in one step, handed to each consumer's event loop in one
    ``call_soon_threadsafe`` per loop per step: waking the loop once per token of every sequence would
    put a third runnable thread on the cores mid-step, which stalls the step's multi-threaded kernels."""

    def __init__(self) -> None:
        self._items: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Queue, Any, Sequence]]] = {}

    def put(self, loop: asyncio.AbstractEventLoop, q: asyncio.Queue, item: Any, seq: Sequence) -> None:
        self._items.setdefault(loop, []).append((q, item, seq))

    def flush(self) -> None:
        items, self._items = self._items, {}
        for loop, batch in items.items():
            try:
                loop.call_soon_threadsafe(_put_all, batch)
            except RuntimeError:  # the consumers' loop is closed: they are gone
                for _, _, seq in batch:
                    seq.aborted = True


def _put_all(batch: list[tuple[asyncio.Queue, Any, Sequence]]) -> None:
    for q, item, _ in batch:
        q.put_nowait(item)


@dataclass(eq=False)
class _Stream:
    """The front end's per-request state; lives in ``Sequence.state``."""

    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue
    outbox: _Outbox
    detokenizer: IncrementalDetokenizer
    stops: StopStringMatcher
    generator: Any = None
    matcher: Any = None  # the request's grammar matcher (structured output), advanced by the sampler
    pending_ids: list[int] = field(default_factory=list)
    pending_logprobs: list[TokenLogprob] = field(default_factory=list)
    counted: bool = False  # prompt and cache-hit tokens reported to metrics
    finished: bool = False  # the engine thread delivered the final delta or an error

    def deliver(self, item: GenerationDelta | BaseException, seq: Sequence) -> None:
        self.outbox.put(self.loop, self.queue, item, seq)  # sent when the engine thread flushes, after the step

    def delta(self, text: str, *, wants_logprobs: bool) -> GenerationDelta:
        d = GenerationDelta(text=text, token_ids=self.pending_ids,
                            logprobs=self.pending_logprobs if wants_logprobs else None)
        self.pending_ids, self.pending_logprobs = [], []
        return d


class _DeltaStream:
    """What ``generate`` returns: an async iterator of deltas; closing it (or dropping it unfinished) aborts
    the sequence, which the engine frees at its next step, even if it was never iterated."""

    def __init__(self, seq: Sequence, wake: threading.Event, decode: Callable[[int], str]) -> None:
        self._seq, self._wake, self._decode = seq, wake, decode
        self._closed = False

    def __aiter__(self) -> "_DeltaStream":
        return self

    async def __anext__(self) -> GenerationDelta:
        if self._closed:
            raise StopAsyncIteration
        try:
            item = await self._seq.state.queue.get()
        except BaseException:  # cancelled while waiting: the client is gone
            await self.aclose()
            raise
        if isinstance(item, BaseException):
            self._closed = True
            raise item
        if item.finish_reason is not None:
            self._closed = True
        if item.logprobs:
            item.logprobs = [self._with_text(lp) for lp in item.logprobs]
        return item

    def _with_text(self, lp: TokenLogprob) -> TokenLogprob:
        """The entry with its token's text and its alternatives' (decoded here, on the event loop's tokenizer)."""
        return dataclasses.replace(lp, text=self._decode(lp.token_id),
                                   top_text=tuple(self._decode(tid) for tid, _ in lp.top))

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            if not self._seq.state.finished:
                self._seq.aborted = True
                self._wake.set()

    def __del__(self) -> None:
        if not self._closed and not self._seq.state.finished:
            self._seq.aborted = True


class LocalEngine:
    """An ``Engine`` for one base model folder; see the module docstring."""

    def __init__(self, model_path: Path | str, base_model_name: str, options: EngineOptions | None = None) -> None:
        self.model_path = Path(model_path)
        self.base_model = base_model_name
        self.options = options or EngineOptions()
        self.config = read_config(self.model_path)
        self.shape = model_shape(self.config)
        self.number_format: FormatChoice | None = None  # chosen when the engine loads
        self.max_context = self.shape.max_context
        self.metrics = EngineMetrics(base_model_name)
        self._inbox: queue.Queue = queue.Queue()
        self._outbox = _Outbox()
        self._wake = threading.Event()
        # Set when interactive (priority 0) work arrives; a step of only batch work stops between layers then.
        self._interactive = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._tokenizer: Any = None
        self._thread_tokenizer: Any = None
        self.eos_token_ids: set[int] = set()
        self.model: LlamaModel | None = None
        self.blocks: BlockManager | None = None
        self.scheduler: Scheduler | None = None
        self.adapters: AdapterStore | None = None
        self.runner: ModelRunner | None = None
        self.grammars: Grammars | None = None
        self._load_error: BaseException | None = None
        self._num_waiting = 0  # approximate, read by the api thread for back-pressure
        self._compiling = 0  # requests waiting for their grammar to compile (event loop only)
        self._tps = 0.0

    # ---- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the engine thread, which loads the model and then runs steps. Every PyTorch kernel of the
        engine runs on that one thread (loading included): a second thread launching parallel kernels
        would give the process a second OpenMP pool, and with more pool threads than cores the workers
        stop spinning and sleep between kernels, which costs a step a third of its speed here."""
        if self._thread is not None:
            return
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name=f"tenfold-engine-{self.base_model}",
                                        daemon=True)
        self._thread.start()
        await asyncio.to_thread(ready.wait)
        if self._load_error is not None:
            self._thread.join()
            self._thread = None
            raise self._load_error

    def _device(self) -> str:
        wanted = self.options.device
        if wanted == "auto":
            wanted = "cuda" if torch.cuda.is_available() else "cpu"
        return wanted

    def _load(self) -> None:
        from transformers import GenerationConfig

        from tenfold.models.registry import load_tokenizer

        o = self.options
        if o.torch_threads > 0:
            torch.set_num_threads(o.torch_threads)
        device = self._device()
        self.number_format = choose_format(
            o.dtype, device=device, shapes=self.shape.linear_shapes(min(256, o.max_batched_tokens), o.max_num_seqs),
            threads=torch.get_num_threads(), cache_file=Path(o.format_cache) if o.format_cache else None)
        fmt = self.number_format.torch_dtype
        log.info("engine number format: %s", self.number_format.reason)
        self.metrics.number_format(self.number_format.dtype)
        # On CPU a 16-bit format covers the base linears and the KV cache, activations stay float32; on a GPU
        # the whole forward runs in it.
        dtype = fmt if device.startswith("cuda") else torch.float32
        self._tokenizer = load_tokenizer(self.model_path)
        self._thread_tokenizer = load_tokenizer(self.model_path)
        self.model = LlamaModel(self.model_path, dtype=dtype, device=device, compute_dtype=fmt)
        try:
            gen_config = GenerationConfig.from_pretrained(str(self.model_path))
        except OSError:
            gen_config = None
        self.eos_token_ids = eos_token_ids(self._tokenizer, gen_config)
        self.grammars = Grammars(self._thread_tokenizer, self.shape.vocab_size, self.eos_token_ids)
        per_block = self.shape.kv_bytes_per_token(fmt) * o.block_size
        useful = o.max_num_seqs * (-(-self.max_context // o.block_size)) + 1
        num_blocks = max(2, min(o.kv_cache_bytes // per_block, useful))
        fits = (num_blocks - 1) * o.block_size
        if fits < self.max_context:
            log.warning("kv_cache_bytes=%d holds %d tokens, less than the model's context of %d: requests are limited "
                        "to %d tokens (raise TENFOLD_KV_CACHE_BYTES for more)", o.kv_cache_bytes, fits,
                        self.max_context, fits)
            self.max_context = fits
        self.blocks = BlockManager(num_blocks, o.block_size, enable_caching=o.enable_prefix_caching)
        self.adapters = AdapterStore(shape=self.shape, base_name=self.base_model, model_path=self.model_path,
                                     num_slots=o.adapter_slots, host_capacity=o.host_adapters,
                                     dtype=LORA_DTYPES[o.lora_dtype] or fmt,
                                     device=torch.device(device), metrics=self.metrics)
        self.adapters.on_loaded = self._wake.set
        self.scheduler = Scheduler(self.blocks, max_num_seqs=o.max_num_seqs, max_batched_tokens=o.max_batched_tokens,
                                   adapters=self.adapters, max_background_tokens=o.max_background_tokens)
        self.runner = ModelRunner(self.model, num_blocks=num_blocks, block_size=o.block_size, adapters=self.adapters)
        self.metrics.kv_total.set(self.blocks.usable_blocks)
        log.info("engine %s on %s/%s: %d KV blocks x %d tokens (%.0f MB)", self.base_model, device, fmt, num_blocks,
                 o.block_size, num_blocks * per_block / 1e6)

    async def stop(self) -> None:
        if self._thread is None or self._stopped:
            return
        self._stopped = True
        self._inbox.put(_STOP)
        self._wake.set()
        await asyncio.to_thread(self._thread.join)
        if self.adapters:
            self.adapters.close()

    def _require_running(self) -> None:
        if self._thread is None:
            raise EngineError("the engine is not started; await engine.start() first")
        if self._stopped:
            raise EngineError("the engine is stopped")

    # ---- token text ----------------------------------------------------------------------------
    def _decode_token(self, token_id: int) -> str:
        return self._tokenizer.decode([token_id], skip_special_tokens=False, clean_up_tokenization_spaces=False)

    # ---- adapters ------------------------------------------------------------------------------
    async def load_adapter(self, adapter: AdapterRef) -> None:
        """Validate and read the adapter into host memory (off the engine thread); it takes a slot on first use."""
        self._require_running()
        await asyncio.to_thread(self.adapters.load_now, adapter)

    def resident_adapters(self) -> list[str]:
        return self.adapters.resident() if self.adapters else []

    # ---- generation ----------------------------------------------------------------------------
    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        """Validate now (raising ``EngineError``), then stream deltas from the engine thread. A grammar that does
        not compile fails the stream (``EngineError`` from its first ``__anext__``): check it first
        (``Grammars.check``) to refuse it up front."""
        self._require_running()
        validate_sampling(request.sampling, self.shape.vocab_size)
        prompt = request.prompt_token_ids
        if not prompt:
            raise EngineError("the prompt is empty")
        vocab = self.shape.vocab_size
        if any(not isinstance(t, int) or t < 0 or t >= vocab for t in prompt):
            raise EngineError(f"prompt token ids must be integers in [0, {vocab})")
        total = len(prompt) + request.sampling.max_tokens
        if total > self.max_context:
            raise EngineError(
                f"this model's maximum context length is {self.max_context} tokens, but the request needs "
                f"{total} ({len(prompt)} prompt + {request.sampling.max_tokens} max_tokens); "
                "shorten the prompt or lower max_tokens")
        if self._num_waiting + self._inbox.qsize() + self._compiling >= self.options.max_waiting:
            self.metrics.rejected.inc()
            raise EngineOverloaded(f"the engine for {self.base_model} has {self.options.max_waiting} requests waiting; "
                                   "retry after a moment", retry_after=1.0)
        # A cached grammar is copied here (microseconds); a new one compiles in a worker thread and the request is
        # queued when it is ready, so a new schema stalls neither the event loop nor other requests' steps.
        matcher = self.grammars.cached_matcher(request.constraint) if request.constraint is not None else None
        if matcher is not None:
            self.metrics.grammar_hits.inc()
        if request.adapter is not None:
            self.adapters.register(request.adapter)
        digest = request.adapter.digest if request.adapter else None
        seq = Sequence(request_id=request.request_id, prompt_token_ids=list(request.prompt_token_ids),
                       sampling=request.sampling, adapter_digest=digest, organization=request.organization,
                       priority=request.priority)
        seq.hash_seed = namespace_seed(seq.cache_namespace)
        seq.state = _Stream(loop=asyncio.get_running_loop(), queue=asyncio.Queue(), outbox=self._outbox,
                            detokenizer=IncrementalDetokenizer(self._thread_tokenizer, request.prompt_token_ids),
                            stops=StopStringMatcher(request.sampling.stop), matcher=matcher)
        if request.constraint is not None and matcher is None:
            self._compile_then_queue(seq, request.constraint)
        else:
            self._queue(seq)  # queued now, so back-pressure counts it even before the caller iterates
        return _DeltaStream(seq, self._wake, self._decode_token)

    def _queue(self, seq: Sequence) -> None:
        self._inbox.put(seq)
        if seq.priority == 0:
            self._interactive.set()
        self._wake.set()

    def _compile_then_queue(self, seq: Sequence, constraint: Constraint) -> None:
        """Compile the grammar in a worker thread; then queue the sequence (or fail its stream)."""
        start = time.perf_counter()
        self._compiling += 1

        def done(future: asyncio.Future) -> None:  # on the event loop
            self._compiling -= 1
            if future.cancelled() or seq.aborted:
                return
            exc = future.exception() or (EngineError("the engine stopped") if self._stopped else None)
            if exc is not None:
                if not isinstance(exc, EngineError):
                    exc = EngineError(f"the grammar could not be compiled: {exc}")
                seq.state.queue.put_nowait(exc)
                return
            self.metrics.grammar_compiled(time.perf_counter() - start)
            seq.state.matcher = future.result()
            self._queue(seq)

        asyncio.get_running_loop().run_in_executor(None, self.grammars.matcher, constraint).add_done_callback(done)

    # ---- engine thread -------------------------------------------------------------------------
    def _run(self, ready: threading.Event) -> None:
        try:
            self._load()
        except BaseException as exc:  # noqa: BLE001 - reported to start()'s caller
            self._load_error = exc
            return
        finally:
            ready.set()
        with torch.inference_mode():
            while True:
                try:
                    self._interactive.clear()  # what arrived before this is drained and scheduled first
                    if not self._drain_inbox():
                        break
                    stepped = self._step()
                    self._outbox.flush()
                    if not stepped:
                        if self.adapters.prewarm() and self._inbox.empty():
                            continue  # more adapters to place in slots while nothing else is asked
                        self._wake.wait(0.05 if self.scheduler.has_work() else 1.0)
                        self._wake.clear()
                except Exception:  # noqa: BLE001 - the engine thread must survive anything
                    log.exception("engine step failed; continuing")
                    self._outbox.flush()
        for seq in list(self.scheduler.running) + list(self.scheduler.waiting):
            self._finish(seq, "abort")
        self._fail_pending()
        self._outbox.flush()

    def _drain_inbox(self) -> bool:
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return True
            if item is _STOP:
                return False
            if not item.aborted:
                item.state.generator = make_generator(item.sampling.seed)
                self.scheduler.add(item)

    def _fail_pending(self) -> None:
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return
            if item is not _STOP:
                item.state.deliver(EngineError("the engine stopped"), item)

    def _step(self) -> bool:
        """Run one step; False when there was nothing to run."""
        sched = self.scheduler
        plan = sched.schedule()
        for seq, exc in plan.failed:
            seq.state.finished = True
            seq.state.deliver(exc, seq)
        for seq in plan.preempted:
            self.metrics.preemptions.inc()
        self._num_waiting = len(sched.waiting)
        if not plan.scheduled:
            self._update_gauges()
            return False
        for item in plan.scheduled:  # first admission: report prompt and cache hit once
            seq = item.seq
            if not seq.state.counted:
                seq.state.counted = True
                self.metrics.request_tokens(organization=seq.organization,
                                            adapter=seq.adapter_digest, prompt=len(seq.prompt_token_ids),
                                            cached=seq.cached_tokens or 0)
        started = time.perf_counter()
        # A step of only batch work yields to interactive work arriving mid-step: it stops between layers and
        # runs again later, so an interactive request waits about one layer, not one step.
        background = all(item.seq.priority > 0 for item in plan.scheduled)
        try:
            sampled = self.runner.execute(plan, self._interactive.is_set if background else None)
        except StepInterrupted:
            self.metrics.interrupted.inc()
            return True
        except Exception as exc:  # noqa: BLE001 - fail this step's requests, keep serving others
            log.exception("engine step failed")
            for item in plan.scheduled:
                item.seq.state.finished = True
                item.seq.state.deliver(EngineError(f"the engine failed on this request: {exc}"), item.seq)
                sched.finish(item.seq, "error")
            return True
        sched.complete(plan)
        elapsed = time.perf_counter() - started
        self._tps = 0.8 * self._tps + 0.2 * (plan.num_tokens / max(elapsed, 1e-6))
        for s in sampled:
            self._on_token(s.item.seq, s.token_id, s.logprob)
        self._num_waiting = len(sched.waiting)
        self._update_gauges()
        return True

    def _update_gauges(self) -> None:
        m, sched = self.metrics, self.scheduler
        m.running.set(len(sched.running))
        m.waiting.set(len(sched.waiting))
        m.kv_used.set(self.blocks.num_used())
        m.tokens_per_second.set(self._tps)

    def _on_token(self, seq: Sequence, token: int, lp: TokenLogprob | None) -> None:
        st: _Stream = seq.state
        params = seq.sampling
        seq.output_token_ids.append(token)
        st.pending_ids.append(token)
        if lp is not None:
            st.pending_logprobs.append(lp)
        self.metrics.generated(organization=seq.organization, adapter=seq.adapter_digest)
        wants = params.logprobs is not None
        if seq.aborted:
            return  # dropped at the next schedule
        # A complete grammar ends the request ("stop"), ignore_eos or not: nothing more may follow it.
        grammar_done = st.matcher is not None and st.matcher.is_stopped()
        if (token in self.eos_token_ids and (grammar_done or not params.ignore_eos)) or token in params.stop_token_ids:
            self._finish_flush(seq, "stop", "")
            return
        text, stopped = st.stops.push(st.detokenizer.add(token))
        if stopped:
            self._finish(seq, "stop", text)
        elif grammar_done:
            self._finish_flush(seq, "stop", text)
        elif len(seq.output_token_ids) >= params.max_tokens or seq.num_tokens >= self.max_context:
            self._finish_flush(seq, "length", text)
        elif text:
            st.deliver(st.delta(text, wants_logprobs=wants), seq)

    def _finish_flush(self, seq: Sequence, reason: str, text: str) -> None:
        """Finish without a stop string so far: flush held-back text (a stop may still complete in it)."""
        st: _Stream = seq.state
        tail, stopped = st.stops.push(st.detokenizer.flush())
        if stopped:
            self._finish(seq, "stop", text + tail)
        else:
            self._finish(seq, reason, text + tail + st.stops.flush())

    def _finish(self, seq: Sequence, reason: str, text: str = "") -> None:
        st: _Stream = seq.state
        if self.scheduler is not None:
            self.scheduler.finish(seq, reason)
        if st.finished:
            return
        st.finished = True
        d = st.delta(text, wants_logprobs=seq.sampling.logprobs is not None)
        d.finish_reason = reason
        d.prompt_tokens = len(seq.prompt_token_ids)
        d.cached_tokens = seq.cached_tokens or 0
        d.completion_tokens = len(seq.output_token_ids)
        st.deliver(d, seq)
