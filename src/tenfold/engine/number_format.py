"""The engine's number format (``TENFOLD_ENGINE_DTYPE``), chosen by measurement on CPUs.

Whether 16-bit matrix products pay on a CPU depends on the CPU: on an Intel Xeon with AMX bfloat16
``F.linear`` ran 4-6x float32; on an AMD EPYC (Zen 4, AVX512-BF16) about 2x; on CPUs without bfloat16 dot
products it is slower than float32. So ``auto`` (the default) measures: at start it times the model's own
base-linear shapes (the decode batch of 64 rows and a 256-row prefill share; the LM head at 64 rows) as the
engine would run them in float32 (``layers.Linear``: the packed C kernel) and in each 16-bit format the CPU
has dot-product instructions for (bfloat16 always; float16 only with AVX512-FP16 or AMX-FP16), for a
fraction of a second, and takes a 16-bit format only when it is at least ``MARGIN`` times faster and passes
the accuracy check: on random inputs of the model's scale every shape's output agrees with float32 within
``TOLERANCE`` (relative Frobenius error; bfloat16's unit roundoff is 2^-8 ≈ 0.4 %, so a correct kernel
lands near 0.3 %, and a broken or badly accumulating one far above). The choice is cached per CPU model,
flags, torch version, thread count and shapes (``$TENFOLD_HOME/cache/engine-format.json``) so it does not
flip between runs; delete the file to measure again. An explicit ``float32``/``bfloat16``/``float16`` is used
as given. On CUDA ``auto`` is bfloat16 (every current GPU multiplies it at full rate).

What a 16-bit format covers on CPU: the decoder layers' base linears (weights and products; oneDNN, float32
accumulation) and the KV cache; activations between them, norms, rotary, softmax, the LoRA delta (its slot
stacks default to the same 16-bit format; ``TENFOLD_LORA_DTYPE`` overrides), the LM head and so the
sampler's logits stay float32 (what autocast does; bfloat16 logits tie often enough to flip greedy answers). ``TENFOLD_ENGINE_DEVICE`` picks the device; this picks the format on it.

Owns: ``choose`` and ``FormatChoice``. Does not own: running the model in the format (``model``, ``layers``).
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

FORMATS = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
MARGIN = 1.3  # a 16-bit format must be at least this much faster than float32 to be chosen
TOLERANCE = {"bfloat16": 0.02, "float16": 0.005}  # relative error of a linear's output vs float32
ROUNDS = 9


@dataclass(frozen=True)
class FormatChoice:
    dtype: str  # "float32", "bfloat16" or "float16"
    reason: str  # one line for the log, the banner and /metrics
    cpu: str = ""
    seconds: dict[str, float] = field(default_factory=dict)  # one round of the model's shapes per format
    errors: dict[str, float] = field(default_factory=dict)  # relative error vs float32 per 16-bit format
    cached: bool = False

    @property
    def torch_dtype(self) -> torch.dtype:
        return FORMATS[self.dtype]


def cpu_signature() -> tuple[str, set[str]]:
    """(model name, the flags that decide 16-bit speed) of this machine's CPU."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and name in ("", platform.processor(), platform.machine()):
                    name = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    wanted = {"avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16", "amx_fp16", "avx512f", "avx2"}
    return name, flags & wanted


def choose(requested: str, *, device: str, shapes: list[tuple[int, int, int]], threads: int,
           cache_file: Path | None = None) -> FormatChoice:
    """The format to run in. ``shapes``: (rows, out_features, in_features) of the model's base linears as a
    step runs them."""
    if requested != "auto":
        if requested not in FORMATS:
            raise ValueError(f"engine dtype must be auto, {', '.join(FORMATS)}; got {requested!r}")
        return FormatChoice(requested, f"{requested} (set by TENFOLD_ENGINE_DTYPE)")
    if device.startswith("cuda"):
        return FormatChoice("bfloat16", "bfloat16 (auto: GPU)")
    cpu, flags = cpu_signature()
    key = f"{cpu} | {' '.join(sorted(flags))} | torch {torch.__version__} | threads {threads} | {shapes}"
    cached = _read(cache_file).get(key) if cache_file else None
    if isinstance(cached, dict) and cached.get("dtype") in FORMATS:
        return FormatChoice(**{**cached, "cached": True})
    choice = _measure(cpu, flags, shapes)
    if cache_file is not None:
        _write(cache_file, key, {k: v for k, v in asdict(choice).items() if k != "cached"})
    return choice


def _candidates(flags: set[str]) -> list[str]:
    out = ["bfloat16"]
    if flags & {"avx512_fp16", "amx_fp16"}:
        out.append("float16")
    return out


def _measure(cpu: str, flags: set[str], shapes: list[tuple[int, int, int]]) -> FormatChoice:
    from tenfold.engine.layers import Linear

    gen = torch.Generator().manual_seed(0)
    cases = []
    for rows, n, k in shapes:
        w = torch.randn(n, k, generator=gen) / k**0.5
        x = torch.randn(rows, k, generator=gen)
        cases.append((x, w))
    candidates = _candidates(flags)
    linears = {"float32": [Linear(w.clone()) for _, w in cases]}
    for fmt in candidates:
        linears[fmt] = [Linear(w.clone(), compute_dtype=FORMATS[fmt]) for _, w in cases]
    with torch.inference_mode():
        reference = [lin(x) for lin, (x, _) in zip(linears["float32"], cases)]
        errors = {}
        for fmt in candidates:
            worst = 0.0
            for lin, (x, _), ref in zip(linears[fmt], cases, reference):
                y = lin(x)
                worst = max(worst, float((y - ref).norm() / ref.norm().clamp_min(1e-30)))
            errors[fmt] = worst if worst == worst else float("inf")  # NaN counts as a failure
        timings: dict[str, list[float]] = {fmt: [] for fmt in linears}
        for _ in range(ROUNDS):  # interleaved, so drift hits every format alike; the first round warms up
            for fmt, lins in linears.items():
                start = time.perf_counter()
                for lin, (x, _) in zip(lins, cases):
                    lin(x)
                timings[fmt].append(time.perf_counter() - start)
    # The fastest round of each: what the CPU can do. Another process stealing a core for part of the fraction
    # of a second this takes only slows some rounds (a median chose float32 once on a CPU where bfloat16 is
    # 1.7x, with a just-ended process's teardown overlapping the measurement).
    seconds = {fmt: min(ts[1:]) for fmt, ts in timings.items()}
    best, why = "float32", []
    for fmt in candidates:
        speedup = seconds["float32"] / seconds[fmt]
        ok = errors[fmt] <= TOLERANCE[fmt]
        why.append(f"{fmt} {speedup:.2f}x float32, error {errors[fmt]:.2%}" + ("" if ok else " (too large)"))
        if ok and speedup >= MARGIN and seconds[fmt] < seconds[best]:
            best = fmt
    reason = f"{best} (auto on {cpu}: " + "; ".join(why) + f"; needs >= {MARGIN}x)"
    return FormatChoice(best, reason, cpu=cpu, seconds={k: round(v, 6) for k, v in seconds.items()},
                        errors={k: round(v, 6) for k, v in errors.items()})


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write(path: Path, key: str, value: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _read(path)
        data[key] = value
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError:  # a read-only home: measure again next time
        pass
