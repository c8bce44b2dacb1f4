"""Serving throughput: tenfold's SimpleEngine vs what a user would otherwise run with transformers + PEFT.

Workload (defaults): SmolLM2-135M-Instruct float32 on CPU, N=8 requests, each a short user question in the
chat template (33-36 prompt tokens, ~30 of them the template's default system prompt), 32 new tokens, greedy, EOS stops a request (tokens are counted up to and
including EOS). K=3 LoRA adapters, rank 16, alpha 32, all-linear, random weights
(``init_lora_weights=False``). The "mixed" workload assigns request i to [A0, A1, A2, base][i % (K+1)].

Arms, all in this one process, each warmed up once, repeats interleaved:
  (a) transformers ``generate`` on the plain base model, all N prompts in one left-padded batch
  (b) PEFT, one adapter (A0) active, all N prompts in one left-padded batch
  (c) PEFT, mixed workload, one request at a time, ``set_adapter`` (or ``disable_adapter`` for base)
      before each; adapters already loaded (no disk I/O in the timing)
  (d) tenfold SimpleEngine, mixed workload, N requests submitted concurrently (it interleaves them one
      forward per request per iteration; no cross-request batching yet)
  (e) PEFT mixed-adapter batch: the mixed workload as one left-padded batch with ``adapter_names=``
Output tok/s = generated tokens / wall time of the whole batch of requests (prefill included).
A second table (skip with --no-breakdown) times one batch-1 decode step per forward path (plain model,
PEFT ``set_adapter``, PEFT ``adapter_names=``), which explains where (c) and (d) spend their time.
Correctness guard (not a timing): the greedy token ids of (d) are compared per request with (c)
(same unpadded batch-1 computation) and with (e) (batched, left-padded).

    .venv/bin/python bench/engine_generate.py [--requests 8] [--new-tokens 32] [--adapters 3]
        [--repeats 2] [--threads 2] [--models-dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BASE_MODEL, default_models_dir, resolve_model, table  # noqa: E402

QUESTIONS = [  # short, so that with the template's default system prompt (~30 tokens) prompts are ~35 tokens
    "Why is the sky blue?", "How do bicycles work?", "Write a sea poem.", "Why does bread rise?",
    "Tell a fox story.", "How do planes fly?", "Uses of copper?", "Why do leaves fall?", "Describe a market.",
    "How do fridges work?", "Write a letter.", "What is photosynthesis?", "How does rain form?",
    "Describe summer.", "Why do cats purr?", "How do mountains form?",
]


def make_adapters(model_path: Path, k: int, folder: Path) -> list[Path]:
    import torch
    from peft import LoraConfig, get_peft_model

    from tenfold.models.registry import load_causal_lm

    paths = []
    for i in range(k):
        torch.manual_seed(1000 + i)
        base = load_causal_lm(model_path)
        peft = get_peft_model(base, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                               init_lora_weights=False, task_type="CAUSAL_LM"))
        out = folder / f"adapter{i}"
        peft.save_pretrained(str(out))
        config_file = out / "adapter_config.json"
        config = json.loads(config_file.read_text())
        config["base_model_name_or_path"] = BASE_MODEL
        config_file.write_text(json.dumps(config, indent=2))
        paths.append(out)
    return paths


def n_generated(row: list[int], eos: set[int]) -> list[int]:
    """Generated ids up to and including the first EOS (what the engine streams)."""
    for i, t in enumerate(row):
        if t in eos:
            return row[:i + 1]
    return row


class HFArms:
    """The transformers/PEFT arms; ``plain`` is an untouched base model, ``peft`` holds the K adapters."""

    def __init__(self, model_path: Path, adapters: list[Path], eos: set[int]) -> None:
        from peft import PeftModel

        from tenfold.models.registry import load_causal_lm, load_tokenizer

        self.tok = load_tokenizer(model_path)
        self.tok.padding_side = "left"
        self.plain = load_causal_lm(model_path)
        self.peft = PeftModel.from_pretrained(load_causal_lm(model_path), str(adapters[0]), adapter_name="a0")
        for i, path in enumerate(adapters[1:], start=1):
            self.peft.load_adapter(str(path), adapter_name=f"a{i}")
        self.peft.eval()
        self.eos = sorted(eos)
        self.pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.eos[0]

    def _gen(self, model, prompts: list[list[int]], new_tokens: int, **kw) -> list[list[int]]:
        import torch

        width = max(len(p) for p in prompts)
        ids = torch.tensor([[self.pad] * (width - len(p)) + p for p in prompts])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens, do_sample=False,
                                 eos_token_id=self.eos, pad_token_id=self.pad, **kw)
        eos = set(self.eos)
        return [n_generated(row[width:].tolist(), eos) for row in out]

    def base_batch(self, prompts, new_tokens):
        return self._gen(self.plain, prompts, new_tokens)

    def one_adapter_batch(self, prompts, new_tokens):
        self.peft.set_adapter("a0")
        return self._gen(self.peft, prompts, new_tokens)

    def swap_sequential(self, prompts, names, new_tokens):
        outs = []
        for prompt, name in zip(prompts, names):
            if name is None:
                with self.peft.disable_adapter():
                    outs += self._gen(self.peft, [prompt], new_tokens)
            else:
                self.peft.set_adapter(name)
                outs += self._gen(self.peft, [prompt], new_tokens)
        return outs

    def mixed_batch(self, prompts, names, new_tokens):
        return self._gen(self.peft, prompts, new_tokens,
                         adapter_names=[n if n is not None else "__base__" for n in names])


def decode_breakdown(hf: HFArms, prompt: list[int], steps: int, repeats: int) -> list[list[object]]:
    """Batch-1 decode latency per PEFT path (what one SimpleEngine step costs, minus the engine itself)."""
    import torch
    from transformers import DynamicCache

    def per_token_ms(model, **kw) -> float:
        best = float("inf")
        for _ in range(repeats):
            cache = DynamicCache(config=hf.plain.config)
            with torch.inference_mode():
                out = model(input_ids=torch.tensor([prompt]), past_key_values=cache, use_cache=True,
                            logits_to_keep=1, **kw)
                t = time.perf_counter()
                for _ in range(steps):
                    token = out.logits[0, -1].argmax().view(1, 1)
                    out = model(input_ids=token, past_key_values=cache, use_cache=True, logits_to_keep=1, **kw)
                best = min(best, (time.perf_counter() - t) / steps * 1000)
        return best

    hf.peft.set_adapter("a0")
    rows = [["plain base model", per_token_ms(hf.plain)],
            ["PeftModel, set_adapter('a0') (arm c)", per_token_ms(hf.peft)],
            ["PeftModel, adapter_names=['a0'] (engine, arm d/e)", per_token_ms(hf.peft, adapter_names=["a0"])],
            ["PeftModel, adapter_names=['__base__'] (engine, base request)",
             per_token_ms(hf.peft, adapter_names=["__base__"])]]
    with hf.peft.disable_adapter():
        rows.append(["PeftModel, disable_adapter() (arm c, base request)", per_token_ms(hf.peft)])
    return [[name, ms, rows[0][1] and ms / rows[0][1]] for name, ms in rows]


async def engine_run(engine, prompts, refs, new_tokens) -> list[list[int]]:
    from tenfold.engine import GenerationRequest, SamplingParams

    async def one(i: int) -> list[int]:
        ids: list[int] = []
        request = GenerationRequest(request_id=f"r{i}", prompt_token_ids=prompts[i], adapter=refs[i],
                                    sampling=SamplingParams(max_tokens=new_tokens, temperature=0.0))
        async for delta in engine.generate(request):
            ids += delta.token_ids
        return ids

    return list(await asyncio.gather(*(one(i) for i in range(len(prompts)))))


async def main_async(args) -> None:
    import torch

    from tenfold.config import Settings
    from tenfold.engine import AdapterRef, create_engine

    torch.set_num_threads(args.threads)
    t = time.perf_counter()
    model_path = resolve_model(args.models_dir)
    print(f"base model {BASE_MODEL} at {model_path} (resolve {time.perf_counter() - t:.1f} s)")
    os.environ["TENFOLD_MODEL_CACHE"] = str(Path(args.models_dir).expanduser())

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        adapter_paths = make_adapters(model_path, args.adapters, Path(tmp))
        engine = create_engine(Settings(home=Path(tmp) / "home", torch_threads=args.threads), BASE_MODEL)
        await engine.start()
        refs_by_name = {f"a{i}": AdapterRef(digest=f"bench-a{i}", path=p) for i, p in enumerate(adapter_paths)}
        for ref in refs_by_name.values():
            await engine.load_adapter(ref)
        hf = HFArms(model_path, adapter_paths, engine.eos_token_ids)
        print(f"setup (make {args.adapters} adapters, load engine + HF/PEFT models) {time.perf_counter() - t:.1f} s")

        prompts = [engine.chat_prompt([{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}])
                   for i in range(args.requests)]
        cycle = [f"a{i}" for i in range(args.adapters)] + [None]
        names = [cycle[i % len(cycle)] for i in range(args.requests)]
        refs = [refs_by_name[n] if n else None for n in names]
        mean_prompt = sum(map(len, prompts)) / len(prompts)
        mix = ", ".join(f"{n or 'base'}:{names.count(n)}" for n in cycle)
        print(f"workload: {args.requests} requests, prompt tokens {min(map(len, prompts))}-{max(map(len, prompts))} "
              f"(mean {mean_prompt:.1f}), {args.new_tokens} new tokens greedy, {args.adapters} adapters r16 "
              f"all-linear, mixed workload {mix}; {args.threads} torch threads, float32")

        arms = {
            "(a) HF generate, base, batch": lambda p, n, k: hf.base_batch(p, k),
            "(b) PEFT 1 adapter, batch": lambda p, n, k: hf.one_adapter_batch(p, k),
            "(c) PEFT swap per request, sequential, mixed": lambda p, n, k: hf.swap_sequential(p, n, k),
            "(d) tenfold SimpleEngine, concurrent, mixed": lambda p, n, k: asyncio.run_coroutine_threadsafe(
                engine_run(engine, p, [refs_by_name[x] if x else None for x in n], k), loop).result(),
            "(e) PEFT mixed-adapter batch (adapter_names)": lambda p, n, k: hf.mixed_batch(p, n, k),
        }
        loop = asyncio.get_running_loop()
        results: dict[str, list[tuple[float, int]]] = {a: [] for a in arms}
        outputs: dict[str, list[list[int]]] = {}
        # The engine arm needs the event loop free, so every arm runs in a worker thread.
        for arm, fn in arms.items():  # warm-up
            await asyncio.to_thread(fn, prompts[:2], names[:2], 4)
        for rep in range(args.repeats):
            order = list(arms) if rep % 2 == 0 else list(reversed(arms))
            for arm in order:
                t = time.perf_counter()
                out = await asyncio.to_thread(arms[arm], prompts, names, args.new_tokens)
                dt = time.perf_counter() - t
                n_out = sum(map(len, out))
                results[arm].append((dt, n_out))
                outputs[arm] = out
                print(f"  run {rep + 1}: {arm:46s} {dt:6.2f} s  {n_out:4d} tokens  {n_out / dt:6.1f} tok/s",
                      flush=True)
        await engine.stop()

    best = {a: max(r, key=lambda x: x[1] / x[0]) for a, r in results.items()}
    ref_rate = best["(a) HF generate, base, batch"][1] / best["(a) HF generate, base, batch"][0]
    rows = []
    for arm, (dt, n_out) in best.items():
        rate = n_out / dt
        rows.append([arm, dt, n_out, rate, rate / ref_rate,
                     " / ".join(f"{n / d:.1f}" for d, n in results[arm])])
    print()
    print(table(["arm", "wall s (best)", "output tokens", "output tok/s (best)", "vs (a)", "tok/s all runs"], rows))
    d = outputs["(d) tenfold SimpleEngine, concurrent, mixed"]
    c = outputs["(c) PEFT swap per request, sequential, mixed"]
    e = outputs["(e) PEFT mixed-adapter batch (adapter_names)"]
    a = outputs["(a) HF generate, base, batch"]
    b = outputs["(b) PEFT 1 adapter, batch"]
    same_as_batch = [(a if n is None else b)[i] == d[i] for i, n in enumerate(names) if n in (None, "a0")]
    if args.breakdown:
        print(f"\nbatch-1 decode latency, {args.new_tokens} steps after a {len(prompts[0])}-token prefill "
              f"(best of {args.repeats}):")
        print(table(["forward path", "ms/token", "vs plain"],
                    decode_breakdown(hf, prompts[0], args.new_tokens, args.repeats)))
    print(f"\ncorrectness guard (greedy token ids of (d) per request): "
          f"== (c) {sum(x == y for x, y in zip(d, c))}/{len(d)}, == (e) {sum(x == y for x, y in zip(d, e))}/{len(d)}, "
          f"== (a)/(b) for its base/a0 requests {sum(same_as_batch)}/{len(same_as_batch)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--adapters", type=int, default=3, help="K adapters; the mixed workload adds base")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (engine and HF arms)")
    parser.add_argument("--models-dir", type=Path, default=default_models_dir())
    parser.add_argument("--no-breakdown", dest="breakdown", action="store_false",
                        help="skip the batch-1 decode latency table")
    args = parser.parse_args()
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
