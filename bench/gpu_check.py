"""The serving workload on a lent GPU (``bench/gpu_check.sh run`` calls this on the device machine): tenfold's
engine on CUDA in its own number format (``auto``: bfloat16 there), 64 concurrent requests of 128 random
prompt tokens + 64 output tokens over 64 random rank-16 all-linear adapters, and the same requests on the
bare base model. The embedded SmolLM2-135M cannot travel to the device (its package is larger than what a
run may carry), so the model is SmolLM2-135M's architecture with random weights (same shapes, so the same
arithmetic and memory traffic) and the tiny test model's tokenizer. Writes its figures as JSON to ``--out``.

    python3 bench/gpu_check.py --tokenizer-from <tiny model folder> --out gpu_check.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from serving import WORK, _run_engine, make_adapters, pct, prompts  # noqa: E402

# SmolLM2-135M-Instruct's config.json (the architecture; weights random here)
SMOLLM2_135M = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                    num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                    rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=1,
                    eos_token_id=2, pad_token_id=2, initializer_range=0.02)


def smollm2_shaped(out: Path, tokenizer_from: Path) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    if not (out / "config.json").is_file():
        torch.manual_seed(0)
        LlamaForCausalLM(LlamaConfig(**SMOLLM2_135M)).save_pretrained(str(out))
        for f in tokenizer_from.iterdir():
            if f.is_file() and ("token" in f.name or f.name == "generation_config.json"):
                shutil.copy(f, out / f.name)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer-from", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--requests", type=int, default=64)
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    model = smollm2_shaped(WORK / "smollm2-135m-shaped", args.tokenizer_from)
    adapters = make_adapters(model, args.requests)
    ps = prompts(args.requests, 128)
    result: dict = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "workload":
                    f"{args.requests} requests x (128 prompt + 64 output), {args.requests} rank-16 all-linear adapters"}
    for arm, reqs in (("adapters", list(zip(ps, adapters))), ("base", [(p, None) for p in ps])):
        start = time.perf_counter()
        r = _run_engine(model, reqs, 64, os.cpu_count() or 1, "smollm2-135m-instruct", None, device="cuda",
                        dtype="auto", kv_cache_bytes=4 << 30)
        result[arm] = {"tok_s": r["tok_s"], "ttft_p50_s": pct(r["ttft"], 50), "ttft_p99_s": pct(r["ttft"], 99),
                       "tpot_p50_ms": 1000 * pct(r["tpot"], 50), "tpot_p99_ms": 1000 * pct(r["tpot"], 99),
                       "format": r["format"], "arm_seconds": time.perf_counter() - start}
        print(arm, json.dumps(result[arm]), flush=True)
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
