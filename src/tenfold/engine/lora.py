"""Adapter residency for the engine: validate PEFT LoRA folders, read them into fused per-layer matrices,
and keep them in three tiers: a fixed number of *slots* (pinned by running sequences, on the engine's
device), a host-memory LRU, and disk (the adapter folder, the source of truth).

Owns: ``validate`` (files, type, base model, target modules, shapes, ranks, dtypes; ``modules_to_save``
and non-LoRA weights refused by name; loud ``AdapterError``s at deploy and import time), reading weights
(scale folded into B; q/k/v and gate/up fused; any subset of modules and mixed ranks), the background
loader (disk reads never block an engine step; it does no tensor math), and LRU eviction of idle slots and
host copies. Does not own: the matmuls (``layers.add_lora``) or scheduling (``scheduler``).
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tenfold.engine.layers import zeros_large_off_thread
from tenfold.engine.lora_stacks import LoraStacks
from tenfold.engine.shapes import LORA_GROUPS, ModelShape
from tenfold.engine.types import AdapterError, AdapterRef
from tenfold.models.registry import is_same_base

log = logging.getLogger(__name__)

WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
_LORA_KEY = re.compile(
    r"^(?:base_model\.model\.)?(?:model\.)?layers\.(?P<layer>\d+)\.(?:self_attn|mlp)\.(?P<module>\w+)"
    r"\.(?P<part>lora_[AB])(?:\.[^.]+)?\.weight$")
_ANY_LORA = re.compile(r"\.lora_[AB](?:\.[^.]+)?\.weight$")


@dataclass
class AdapterWeights:
    """An adapter in host memory, as read from disk: per layer ``{module: (A [r, in], B [out, r], scale)}``
    in the file's dtype. The engine thread transposes, scales and converts when it writes a slot, so the
    loader thread runs no tensor math: a second thread launching PyTorch's parallel kernels would give
    the process two OpenMP pools, more pool threads than cores, and throttled (sleeping) workers in the
    engine's every step."""

    digest: str
    modules: list[dict[str, tuple[torch.Tensor, torch.Tensor, float]]]
    max_rank: int
    nbytes: int = 0
    ranks: dict[str, int] = field(default_factory=dict)
    fits: torch.dtype | None = None  # the slot dtype these weights were checked against (``LoraStacks.check``)


def _module_names(shape: ModelShape) -> dict[str, tuple[int, int]]:
    """Linear modules of the base: name → (in_features, out_features)."""
    q, kv = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    dims = {"q_proj": (shape.hidden, q), "k_proj": (shape.hidden, kv), "v_proj": (shape.hidden, kv),
            "o_proj": (q, shape.hidden), "gate_proj": (shape.hidden, shape.intermediate),
            "up_proj": (shape.hidden, shape.intermediate), "down_proj": (shape.intermediate, shape.hidden)}
    return dims


def read_adapter_config(ref: AdapterRef) -> dict:
    path = Path(ref.path)
    if not path.is_dir():
        raise AdapterError(f"adapter {ref.digest}: folder {path} does not exist")
    config_file = path / "adapter_config.json"
    if not config_file.is_file():
        raise AdapterError(f"adapter {ref.digest}: {path} has no adapter_config.json; is it a PEFT adapter folder?")
    try:
        return json.loads(config_file.read_text())
    except (OSError, ValueError) as exc:
        raise AdapterError(f"adapter {ref.digest}: adapter_config.json is not valid JSON: {exc}") from exc


def validate_adapter(ref: AdapterRef, *, shape: ModelShape, base_name: str, model_path: Path) -> dict:
    """Check the folder can serve on this base model; return its adapter config. Raises ``AdapterError``."""
    config = read_adapter_config(ref)
    if str(config.get("peft_type", "")).upper() != "LORA":
        raise AdapterError(f"adapter {ref.digest}: peft_type is {config.get('peft_type')!r}; only LORA adapters "
                           "are served")
    if config.get("use_dora"):
        raise AdapterError(f"adapter {ref.digest}: DoRA adapters are not served; train with use_dora=false")
    declared = config.get("base_model_name_or_path") or ""
    if declared and not is_same_base(declared, base_name=base_name, model_path=model_path):
        raise AdapterError(
            f"adapter {ref.digest} was trained on base model {declared!r}, but this engine serves {base_name!r}; "
            f"deploy it on a deployment of {declared!r} or retrain it on {base_name!r}")
    modules = _module_names(shape)
    targets = config.get("target_modules")
    if targets not in (None, "all-linear"):
        full_names = [f"model.layers.{i}.{'self_attn' if m in ('q_proj', 'k_proj', 'v_proj', 'o_proj') else 'mlp'}.{m}"
                      for i in range(shape.layers) for m in modules]
        if isinstance(targets, str):
            matched = any(re.fullmatch(targets, n) for n in full_names)
        else:
            wanted = set(targets)
            matched = any(n.rsplit(".", 1)[-1] in wanted or n in wanted for n in full_names)
        if not matched:
            raise AdapterError(f"adapter {ref.digest}: target_modules {targets!r} match no module of base model "
                               f"{base_name!r}; its linear modules are {sorted(modules)}")
    path = Path(ref.path)
    weights = [path / name for name in WEIGHT_FILES if (path / name).is_file()]
    if not weights:
        raise AdapterError(f"adapter {ref.digest}: {path} has no weights ({' or '.join(WEIGHT_FILES)})")
    if weights[0].suffix != ".safetensors":
        raise AdapterError(f"adapter {ref.digest}: only adapter_model.safetensors is served; re-save it with "
                           "safe_serialization=True")
    _check_shapes(ref, weights[0], shape, modules, config)
    return config


_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}


def _expected_rank(config: dict, key: str) -> int | None:
    """The rank ``adapter_config.json`` declares for the module of weight ``key``: the first ``rank_pattern``
    entry whose regex matches the module name's tail (PEFT's rule), else ``r``."""
    module = key[: key.index(".lora_")].removeprefix("base_model.model.")
    for pattern, r in (config.get("rank_pattern") or {}).items():
        try:
            if re.match(rf"(.*\.)?({pattern})$", module):
                return int(r)
        except re.error:
            continue
    r = config.get("r")
    return int(r) if isinstance(r, int) and r > 0 else None


def _check_shapes(ref: AdapterRef, file: Path, shape: ModelShape, modules: dict[str, tuple[int, int]],
                  config: dict) -> None:
    from safetensors import safe_open

    if config.get("modules_to_save"):
        raise AdapterError(f"adapter {ref.digest}: modules_to_save {config['modules_to_save']!r} trains whole "
                           "modules beside the LoRA matrices, which the engine cannot serve per request; retrain "
                           "without modules_to_save")
    try:
        with safe_open(str(file), framework="pt") as handle:
            shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
            dtypes = {key: handle.get_slice(key).get_dtype() for key in handle.keys()}
    except Exception as exc:  # corrupt or truncated file
        raise AdapterError(f"adapter {ref.digest}: cannot read {file.name}: {exc}") from exc
    lora_keys = [k for k in shapes if _ANY_LORA.search(k)]
    if not lora_keys:
        raise AdapterError(f"adapter {ref.digest}: {file.name} holds no LoRA weights")
    other = sorted(set(shapes) - set(lora_keys))
    if other:
        raise AdapterError(f"adapter {ref.digest}: {file.name} holds weights that are not LoRA matrices ("
                           f"{', '.join(other[:3])}{', …' if len(other) > 3 else ''}): trained embeddings, lm_head, "
                           "modules_to_save or DoRA magnitudes are not served; keep only lora_A/lora_B weights")
    ranks: dict[str, dict[str, int]] = {}
    for key in lora_keys:
        m = _LORA_KEY.match(key)
        if m is None or m["module"] not in modules or int(m["layer"]) >= shape.layers:
            raise AdapterError(f"adapter {ref.digest}: weight {key} targets a module the base model lacks or "
                               f"the engine does not adapt (it adapts {sorted(modules)})")
        if dtypes[key] not in _DTYPES:
            raise AdapterError(f"adapter {ref.digest}: weight {key} is {dtypes[key]}; LoRA weights must be "
                               f"{', '.join(_DTYPES.values())}")
        in_f, out_f = modules[m["module"]]
        s = shapes[key]
        ok = len(s) == 2 and (s[1] == in_f if m["part"] == "lora_A" else s[0] == out_f)
        if not ok:
            raise AdapterError(f"adapter {ref.digest}: weight {key} has shape {list(s)}, which does not fit "
                               f"{m['module']} ({in_f} -> {out_f}) of this base model")
        rank = s[0] if m["part"] == "lora_A" else s[1]
        expected = _expected_rank(config, key)
        if expected is not None and rank != expected:
            raise AdapterError(f"adapter {ref.digest}: weight {key} has rank {rank}, but adapter_config.json "
                               f"declares r={expected} for it")
        ranks.setdefault(key[: key.index(".lora_")], {})[m["part"]] = rank
    for module, parts in ranks.items():
        if len(parts) != 2 or parts["lora_A"] != parts["lora_B"]:
            raise AdapterError(f"adapter {ref.digest}: {module} needs lora_A and lora_B of one rank; it has "
                               f"{parts}")


def load_adapter_weights(ref: AdapterRef, *, shape: ModelShape) -> AdapterWeights:
    """Read an adapter (already validated) into per-layer (A, B, scale) triples; no tensor math here."""
    from safetensors.torch import load_file

    config = read_adapter_config(ref)
    state = load_file(str(Path(ref.path) / WEIGHT_FILES[0]))
    parts: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        m = _LORA_KEY.match(key)
        if m:
            parts.setdefault((int(m["layer"]), m["module"]), {})[m["part"]] = tensor
    alpha = float(config.get("lora_alpha") or config.get("r") or 8)
    alpha_pattern = config.get("alpha_pattern") or {}
    rslora = bool(config.get("use_rslora"))
    ranks: dict[str, int] = {}
    layers: list[dict[str, tuple[torch.Tensor, torch.Tensor]]] = []
    nbytes = 0
    for i in range(shape.layers):
        mods: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for module in LORA_GROUPS:
            p = parts.get((i, module))
            if not p or "lora_A" not in p or "lora_B" not in p:
                continue
            a, b = p["lora_A"], p["lora_B"]
            r = a.shape[0]
            mod_alpha = float(next((v for k, v in alpha_pattern.items() if module in k), alpha))
            scale = mod_alpha / math.sqrt(r) if rslora else mod_alpha / r
            ranks[module] = max(r, ranks.get(module, 0))
            mods[module] = (a, b, scale)
            nbytes += a.numel() * a.element_size() + b.numel() * b.element_size()
        layers.append(mods)
    if not ranks:
        raise AdapterError(f"adapter {ref.digest}: no LoRA weights for the modules the engine adapts")
    return AdapterWeights(ref.digest, layers, max(ranks.values()), nbytes, ranks)


class AdapterStore:
    """The three tiers. ``acquire``/``release``/``slot_of`` run on the engine thread; loads from disk run
    on a background thread and land in the host tier under a lock."""

    def __init__(self, *, shape: ModelShape, base_name: str, model_path: Path, num_slots: int,
                 host_capacity: int, dtype: torch.dtype, device: torch.device, metrics: Any = None) -> None:
        if num_slots < 1:
            raise ValueError(f"adapter slots must be >= 1, got {num_slots}")
        self.shape, self.base_name, self.model_path = shape, base_name, Path(model_path)
        self.num_slots, self.host_capacity = num_slots, max(host_capacity, num_slots)
        self.dtype, self.device = dtype, device
        self.metrics = metrics
        self._refs: dict[str, AdapterRef] = {}  # every adapter seen: digest -> folder
        self._host: OrderedDict[str, AdapterWeights] = OrderedDict()
        self._slots: OrderedDict[str, list[int]] = OrderedDict()  # digest -> [slot index, pins], LRU first
        self.stacks = LoraStacks(shape, dtype=dtype, device=device)
        self._loading: set[str] = set()
        self._failed: dict[str, AdapterError] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tenfold-adapter-loader")
        self.load_seconds: list[float] = []
        self.on_loaded: Any = None  # callback to wake the engine loop
        # Growing the slot stacks past this many bytes is prepared off the engine thread (a zeroed buffer
        # from the loader thread): requests for the new adapter wait, everyone else keeps stepping.
        self.sync_grow_bytes = 64 << 20
        self._prepared: tuple[int, int, torch.Tensor] | None = None  # (capacity, rank, zeroed buffer)
        self._preparing: tuple[int, int] | None = None

    # ---- any thread -------------------------------------------------------------------------
    def register(self, ref: AdapterRef) -> None:
        with self._lock:
            self._refs[ref.digest] = ref
            self._failed.pop(ref.digest, None)  # a re-registered adapter gets a fresh try

    def validate(self, ref: AdapterRef) -> dict:
        return validate_adapter(ref, shape=self.shape, base_name=self.base_name, model_path=self.model_path)

    def load_now(self, ref: AdapterRef) -> None:
        """Validate and read ``ref`` into the host tier on the calling thread (deploy time)."""
        self.register(ref)
        self._load(ref.digest)
        with self._lock:
            if ref.digest in self._failed:
                raise self._failed.pop(ref.digest)

    def _load(self, digest: str) -> None:
        import time

        start = time.perf_counter()
        with self._lock:
            ref = self._refs[digest]
        try:
            self.validate(ref)
            weights = load_adapter_weights(ref, shape=self.shape)
        except AdapterError as exc:
            with self._lock:
                self._failed[digest] = exc
                self._loading.discard(digest)
        except Exception as exc:  # noqa: BLE001 - anything unreadable is the adapter's fault, said loudly
            with self._lock:
                self._failed[digest] = AdapterError(f"adapter {digest}: cannot load {ref.path}: {exc}")
                self._loading.discard(digest)
        else:
            with self._lock:
                self._host[digest] = weights
                self._host.move_to_end(digest)
                self._loading.discard(digest)
                self._evict_host(keep=digest)
            self.load_seconds.append(time.perf_counter() - start)
            if self.metrics:
                self.metrics.adapter_loads.inc()
            log.info("loaded adapter %s (%.1f MB) in %.3f s", digest, weights.nbytes / 1e6, time.perf_counter() - start)
        if self.on_loaded:
            self.on_loaded()

    def _evict_host(self, *, keep: str) -> None:
        """Drop least recently used host copies that hold no slot (caller holds the lock)."""
        while len(self._host) > self.host_capacity:
            victim = next((d for d in self._host if d not in self._slots and d != keep), None)
            if victim is None:
                return
            del self._host[victim]
            if self.metrics:
                self.metrics.evicted("host")

    # ---- engine thread ----------------------------------------------------------------------
    def acquire(self, digest: str) -> bool:
        if digest in self._slots:
            self._slots[digest][1] += 1
            self._slots.move_to_end(digest)
            return True
        with self._lock:
            if digest in self._failed:
                raise self._failed[digest]
            host = self._host.get(digest)
            if host is None:
                if digest not in self._loading:
                    if digest not in self._refs:
                        raise AdapterError(f"adapter {digest} was never registered with this engine")
                    self._loading.add(digest)
                    self._pool.submit(self._load, digest)
                return False
            self._host.move_to_end(digest)
        self._check(digest, host)
        if host.max_rank > self.stacks.rank and not self._grow(rank=host.max_rank):
            return False  # wider stacks are being prepared
        slot = self._take_slot()
        if slot is None:
            return False  # every slot is pinned by running sequences (or more slots are being prepared)
        self.stacks.write(slot, host.modules, checked=True)
        self._slots[digest] = [slot, 1]
        with self._lock:
            self._evict_host(keep=digest)  # the evicted slot's host copy may now be over the host limit
        return True

    def _check(self, digest: str, host: AdapterWeights) -> None:
        """Make sure the slots can hold these weights before a slot is taken for them (so a refusal evicts
        nothing); a refused adapter fails now and for every later request, like one that cannot be read."""
        if host.fits == self.stacks.dtype:
            return
        try:
            self.stacks.check(host.modules)
        except AdapterError as exc:
            err = AdapterError(f"adapter {digest}: {exc}")
            with self._lock:
                self._failed[digest] = err
                self._host.pop(digest, None)
            raise err from None
        host.fits = self.stacks.dtype

    def _take_slot(self) -> int | None:
        used = len(self._slots)
        if used < self.num_slots:
            if used >= self.stacks.capacity:
                # Grow by doubling, so a laptop with one adapter holds one slot, but straight to the number
                # of adapters already in host memory (they were deployed to be used): a burst of requests
                # for many adapters then pays one allocation, not one per doubling.
                with self._lock:
                    loaded = len(self._host)
                if not self._grow(capacity=min(self.num_slots, max(1, 2 * self.stacks.capacity, loaded))):
                    return None
            return used
        idle = next((d for d, (_, pins) in self._slots.items() if pins == 0), None)
        if idle is None:
            return None
        slot, _ = self._slots.pop(idle)
        if self.metrics:
            self.metrics.evicted("slot")
        return slot

    def _grow(self, *, capacity: int = 0, rank: int = 0) -> bool:
        """Grow the stacks (engine thread). Small growth happens now; a big one on CPU uses a zeroed buffer
        prepared on the loader thread: False (try again later) until it is ready."""
        capacity = max(capacity, self.stacks.capacity, 1)
        rank = max(rank, self.stacks.rank, 1)
        zeroed = None
        big = self.stacks.numel(capacity, rank) * self.stacks.dtype.itemsize > self.sync_grow_bytes
        if big and self.stacks.device.type == "cpu":
            with self._lock:
                ready = self._prepared
                if ready is not None and ready[0] >= capacity and ready[1] >= rank:
                    capacity, rank, zeroed = ready
                    self._prepared = None
                elif self._preparing is None:
                    self._prepared = None  # too small now: do not hold its memory
                    self._preparing = (capacity, rank)
                    self._pool.submit(self._prepare, capacity, rank)
                    return False
                else:
                    return False
        rank_grows = rank > self.stacks.rank
        self.stacks.ensure(capacity, rank, zeroed=zeroed)
        if rank_grows:  # padding changed: rewrite every slotted adapter from its host copy
            for digest, (slot, _) in self._slots.items():
                self.stacks.write(slot, self._host[digest].modules, checked=True)
        return True

    def _prepare(self, capacity: int, rank: int) -> None:
        """Loader thread: a zeroed buffer for stacks of ``capacity`` x ``rank`` (no PyTorch kernels here)."""
        try:
            buffer = zeros_large_off_thread(self.stacks.numel(capacity, rank), dtype=self.stacks.dtype)
        except Exception:  # noqa: BLE001 - out of memory: the engine thread will try again
            log.exception("could not prepare LoRA slot stacks of %d x rank %d", capacity, rank)
            buffer = None
        with self._lock:
            self._preparing = None
            if buffer is not None:
                self._prepared = (capacity, rank, buffer)
        if self.on_loaded:
            self.on_loaded()

    def prewarm(self, *, max_writes: int = 4) -> bool:
        """Between steps, when the engine is idle: give adapters already in host memory a free slot ahead of
        their first request (growing the stacks once, to their number), so a burst of first requests does
        not pay for slot allocation and copies. Never evicts. True if more remain to be written now."""
        free = self.num_slots - len(self._slots)
        if free <= 0:
            return False
        with self._lock:
            pending = [d for d in reversed(self._host) if d not in self._slots][:free]  # newest first
        if not pending:
            return False
        need = len(self._slots) + len(pending)
        if need > self.stacks.capacity and not self._grow(
                capacity=min(self.num_slots, max(need, 2 * self.stacks.capacity))):
            return False  # bigger stacks are being prepared; the loader wakes the engine when they are
        for digest in pending[:max_writes]:
            with self._lock:
                host = self._host.get(digest)
            if host is None:  # evicted from host memory meanwhile
                continue
            try:
                self._check(digest, host)
            except AdapterError as exc:  # its first request will get the error
                log.warning("%s", exc)
                continue
            if host.max_rank > self.stacks.rank and not self._grow(rank=host.max_rank):
                return False
            slot = len(self._slots)
            self.stacks.write(slot, host.modules, checked=True)
            self._slots[digest] = [slot, 0]
            self._slots.move_to_end(digest, last=False)  # prewarmed but unused: first in line for eviction
        return len(pending) > max_writes

    def release(self, digest: str) -> None:
        if digest in self._slots:
            self._slots[digest][1] = max(0, self._slots[digest][1] - 1)

    def slot_of(self, digest: str) -> int:
        return self._slots[digest][0]

    def resident(self) -> list[str]:
        """Digests in slots, least recently used first."""
        return list(self._slots)

    def in_host(self) -> list[str]:
        with self._lock:
            return list(self._host)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
