"""One vLLM arm of ``bench/serving.py``, run by the vLLM environment's python (its pins differ from ours):
vLLM's offline engine (``vllm.LLM``) on the same model, prompts and adapters as tenfold's arms, with or
without one LoRA adapter per request, in a given dtype, on ``--threads`` cores. Prints one JSON line:
output tokens/s over the timed ``generate`` (after a one-token warm-up over every prompt's first tokens, which
loads the adapters, as tenfold's arms load theirs before the clock).

    .vllm-venv/bin/python bench/_vllm_offline.py --spec spec.json
"""

from __future__ import annotations

import argparse
import json
import os
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", required=True)
    spec = json.load(open(ap.parse_args().spec))
    threads = int(spec["threads"])
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{threads - 1}" if threads > 1 else "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt
    from vllm.lora.request import LoRARequest

    adapters = spec.get("adapters") or []
    kwargs = {}
    if adapters:
        kwargs = {"enable_lora": True, "max_loras": len(set(adapters)), "max_cpu_loras": len(set(adapters)),
                  "max_lora_rank": int(spec["rank"])}
    llm = LLM(model=spec["model"], dtype=spec["dtype"], enable_prefix_caching=False, seed=0,
              max_num_seqs=max(64, len(spec["prompts"])), **kwargs)
    params = SamplingParams(max_tokens=int(spec["output"]), temperature=0, ignore_eos=True)
    prompts = [TokensPrompt(prompt_token_ids=p) for p in spec["prompts"]]
    ids = {path: i + 1 for i, path in enumerate(dict.fromkeys(adapters))}
    loras = [LoRARequest(f"a{ids[p]}", ids[p], p) for p in adapters] if adapters else None
    warm = [TokensPrompt(prompt_token_ids=p[:8]) for p in spec["prompts"]]  # loads every adapter, briefly
    llm.generate(warm, SamplingParams(max_tokens=1), lora_request=loras, use_tqdm=False)
    start = time.perf_counter()
    outs = llm.generate(prompts, params, lora_request=loras, use_tqdm=False)
    wall = time.perf_counter() - start
    tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    print("RESULT " + json.dumps({"tok_s": tokens / wall, "wall": wall, "tokens": tokens}), flush=True)


if __name__ == "__main__":
    main()
