"""Structured-outputs benchmark (issue 17): what constrained decoding costs on the embedded SmolLM2-135M.

Sections, each measured side by side in one run:
  throughput  64 concurrent chat requests, each asking for a JSON list of users, decoded under a JSON schema
              (an array of at least 40 user objects with bounded strings, integers and an enum, so no row's
              grammar can finish within ``--output`` tokens: equal work, ``ignore_eos``) vs the same requests
              unconstrained; interleaved rounds in one engine, a fresh prefix-cache namespace per round. The
              time spent filling and applying grammar masks is measured inside the sampler.
  compile     grammar compile time for typical schemas and a tool-call grammar (llguidance; xgrammar too when it
              is installed), the cost of a cached matcher, and the mask time per row.
  http        a real ``tenfold serve``: TTFT (streamed) with a schema it has never seen vs one it has compiled,
              interleaved; the grammar cache hit rate from ``/metrics``; and validity: the fraction of answers
              that parse and validate, with ``response_format`` vs without (the schema in the prompt for both).

    python bench/structured.py --threads 2 [--section throughput|compile|http|all]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _common import BASE_MODEL, default_models_dir, resolve_model, start_server, table  # noqa: E402

USER = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 16},
                                         "age": {"type": "integer", "minimum": 0, "maximum": 120},
                                         "role": {"enum": ["admin", "editor", "viewer"]}},
        "required": ["name", "age", "role"], "additionalProperties": False}
USERS = {"type": "array", "items": USER, "minItems": 40}  # no row can finish within the output budget
ASK_USERS = "List forty users of a photo-sharing site as a JSON array of objects with name, age and role."

# Typical response_format schemas (the slow test's set) with the prompts that ask for them.
SCHEMAS = [
    ({"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 30},
        "address": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30},
                                                     "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
                    "required": ["city"], "additionalProperties": False}},
      "required": ["name", "address"], "additionalProperties": False},
     "Give a person and their address as JSON."),
    ({"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string", "maxLength": 12},
                                                "minItems": 1, "maxItems": 4}},
      "required": ["tags"], "additionalProperties": False},
     "List a few tags for a photo of a beach as JSON."),
    ({"type": "object", "properties": {"sentiment": {"enum": ["positive", "negative", "neutral"]},
                                       "confidence": {"type": "number", "minimum": 0, "maximum": 1}},
      "required": ["sentiment", "confidence"], "additionalProperties": False},
     "Rate the sentiment of 'I love this!' as JSON."),
    ({"type": "object", "properties": {"year": {"type": "integer", "minimum": 1900, "maximum": 2100},
                                       "title": {"type": "string", "maxLength": 40},
                                       "rating": {"type": "integer", "minimum": 1, "maximum": 5}},
      "required": ["year", "title"], "additionalProperties": False},
     "Describe a film as JSON."),
    ({"type": "object", "properties": {"steps": {"type": "array", "maxItems": 3, "items": {
        "type": "object", "properties": {"n": {"type": "integer", "minimum": 1, "maximum": 9},
                                         "done": {"type": "boolean"}},
        "required": ["n", "done"], "additionalProperties": False}}},
      "required": ["steps"], "additionalProperties": False},
     "Give a short plan as JSON steps."),
]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
                                           "parameters": {"type": "object", "properties": {
                                               "city": {"type": "string"},
                                               "unit": {"enum": ["celsius", "fahrenheit"]}},
                                               "required": ["city"], "additionalProperties": False}}},
         {"type": "function", "function": {"name": "search", "description": "Search the web",
                                           "parameters": {"type": "object", "properties": {
                                               "query": {"type": "string"}, "limit": {"type": "integer"}},
                                               "required": ["query"]}}}]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


# ---- throughput ---------------------------------------------------------------------------------------------
def section_throughput(args, model_path: Path) -> None:
    import tenfold.engine.sampler as sampler
    from tenfold.engine.async_engine import EngineOptions, LocalEngine
    from tenfold.engine.types import Constraint, GenerationRequest, SamplingParams
    from tenfold.inference.prompts import Prompter

    masked = {"seconds": 0.0, "calls": 0, "rows": 0}
    original = sampler.mask_logits

    def timed_mask(logits, rows, vocab_size):  # on the engine thread, inside the step
        start = time.perf_counter()
        original(logits, rows, vocab_size)
        masked["seconds"] += time.perf_counter() - start
        masked["calls"] += 1
        masked["rows"] += len(rows)

    sampler.mask_logits = timed_mask
    prompter = Prompter(model_path)
    prompts = [prompter.chat_prompt([{"role": "user", "content": f"{ASK_USERS} (request {i})"}])
               for i in range(args.requests)]
    constraint = Constraint("json_schema", json.dumps(USERS))

    async def main() -> list[list]:
        engine = LocalEngine(model_path, BASE_MODEL, EngineOptions(torch_threads=args.threads,
                                                                   max_num_seqs=args.requests))
        await engine.start()
        rows = []
        try:
            # warm-up: compile the grammar and run one round of each arm (not reported)
            for r in range(args.rounds + 1):
                for arm in ("unconstrained", "json schema"):
                    before = dict(masked)
                    start = time.perf_counter()

                    async def one(i: int, ids: list[int]) -> tuple[int, str, str]:
                        req = GenerationRequest(
                            f"{arm}-{r}-{i}", ids,
                            SamplingParams(max_tokens=args.output, temperature=0.7, seed=i, ignore_eos=True),
                            organization=f"round-{r}-{arm}",
                            constraint=constraint if arm == "json schema" else None)
                        n, text, finish = 0, [], None
                        async for d in engine.generate(req):
                            n += len(d.token_ids)
                            text.append(d.text)
                            finish = d.finish_reason or finish
                        return n, "".join(text), finish

                    outs = await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts)))
                    wall = time.perf_counter() - start
                    tokens = sum(n for n, _, _ in outs)
                    if any(f != "length" for _, _, f in outs) or tokens != args.requests * args.output:
                        raise SystemExit(f"unequal work in {arm}: {[f for _, _, f in outs]} {tokens} tokens")
                    mask_s = masked["seconds"] - before["seconds"]
                    steps = masked["calls"] - before["calls"]
                    if r > 0:
                        rows.append([r, arm, tokens, wall, tokens / wall, mask_s * 1e3 / max(steps, 1),
                                     mask_s * 1e6 / max(masked["rows"] - before["rows"], 1), 100 * mask_s / wall])
                    if arm == "json schema" and r == 1:
                        print("sample constrained output:", outs[0][1][:160].replace("\n", " "))
        finally:
            await engine.stop()
        return rows

    rows = asyncio.run(main())
    print(f"\n## throughput: {args.requests} concurrent requests x {args.output} output tokens (ignore_eos, "
          f"temperature 0.7), threads={args.threads}\n")
    print(table(["round", "arm", "tokens", "wall s", "output tok/s", "mask ms/step", "mask µs/row",
                 "mask % of wall"], [[r[0], r[1], r[2], r[3], r[4], r[5] if r[1] != "unconstrained" else "-",
                                      r[6] if r[1] != "unconstrained" else "-",
                                      r[7] if r[1] != "unconstrained" else "-"] for r in rows]))
    ratios = []
    for r in range(1, args.rounds + 1):
        free = next(x[4] for x in rows if x[0] == r and x[1] == "unconstrained")
        constrained = next(x[4] for x in rows if x[0] == r and x[1] == "json schema")
        ratios.append(constrained / free)
    print(f"\nconstrained / unconstrained output tok/s per round: {', '.join(f'{x:.3f}' for x in ratios)} "
          f"(median {statistics.median(ratios):.3f}; target >= 0.9)")


# ---- compile ------------------------------------------------------------------------------------------------
def section_compile(args, model_path: Path) -> None:
    from tenfold.engine.grammar import Grammars, mask_logits
    from tenfold.engine.types import Constraint
    from tenfold.inference.prompts import Prompter
    from tenfold.inference.tools import ToolPlan

    prompter = Prompter(model_path)
    vocab = prompter.grammars().vocab_size
    named = [(f"schema {i + 1}", Constraint("json_schema", json.dumps(s))) for i, (s, _) in enumerate(SCHEMAS)]
    named.append(("users (40+ items)", Constraint("json_schema", json.dumps(USERS))))
    named.append(("json_object", Constraint("json_schema", json.dumps({"type": "object"}))))
    functions = [t["function"] for t in TOOLS]
    for mode in ("auto", "required"):
        named.append((f"2 tools, tool_choice {mode}", ToolPlan(functions, mode, parallel=True).constraint()))
    rows = []
    g = Grammars(prompter.tokenizer, vocab)
    g.matcher(Constraint("json_schema", "{}"))  # the tokenizer's one-time set-up, outside the timings
    words = (vocab + 31) // 32
    bits = torch.empty((1, words), dtype=torch.int32)
    for name, constraint in named:
        compiles, copies, fills, masks = [], [], [], []
        for _ in range(args.repeats):
            g._templates.clear()  # forget it: the next matcher() compiles
            start = time.perf_counter()
            g.matcher(constraint)
            compiles.append(time.perf_counter() - start)
            start = time.perf_counter()
            m = g.matcher(constraint)
            copies.append(time.perf_counter() - start)
            logits = torch.zeros(1, vocab)
            for _ in range(20):  # along a real path: take the first allowed token each step
                start = time.perf_counter()
                m.unsafe_compute_mask_ptr(bits[0].data_ptr(), words * 4)
                fills.append(time.perf_counter() - start)
                start = time.perf_counter()
                mask_logits(logits, [(0, m)], vocab)
                masks.append(time.perf_counter() - start)
                token = int(torch.argmax(logits[0]).item())
                if m.is_stopped() or not m.consume_token(token):
                    break
                logits.zero_()
        rows.append([name, statistics.median(compiles) * 1e3, max(compiles) * 1e3,
                     statistics.median(copies) * 1e6, statistics.median(fills) * 1e6,
                     statistics.median(masks) * 1e6])
    print(f"\n## compile (llguidance {_version('llguidance')}, {args.repeats} fresh compiles each; vocabulary "
          f"{vocab})\n")
    print(table(["grammar", "compile ms (median)", "compile ms (max)", "cached matcher µs", "mask fill µs",
                 "fill + apply to logits µs"], rows))
    _xgrammar(args, prompter, vocab)


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def _xgrammar(args, prompter, vocab: int) -> None:
    """The same schemas on xgrammar, when it is installed (it is not a dependency: it brings triton)."""
    try:
        import xgrammar as xgr
    except ImportError:
        print("\nxgrammar: not installed (pip install xgrammar to compare)")
        return
    info = xgr.TokenizerInfo.from_huggingface(prompter.tokenizer, vocab_size=vocab)
    rows = []
    for i, (schema, _) in enumerate(SCHEMAS + [(USERS, "")]):
        compiles, fills, masks = [], [], []
        for _ in range(args.repeats):
            compiler = xgr.GrammarCompiler(info, cache_enabled=False)
            start = time.perf_counter()
            compiled = compiler.compile_json_schema(json.dumps(schema), any_whitespace=False)
            compiles.append(time.perf_counter() - start)
            matcher = xgr.GrammarMatcher(compiled)
            bitmask = xgr.allocate_token_bitmask(1, vocab)
            logits = torch.zeros(1, vocab)
            for _ in range(20):
                if matcher.is_terminated():
                    break
                start = time.perf_counter()
                matcher.fill_next_token_bitmask(bitmask)
                fills.append(time.perf_counter() - start)
                xgr.apply_token_bitmask_inplace(logits, bitmask)
                masks.append(time.perf_counter() - start)
                token = int(torch.argmax(logits[0]).item())
                if not matcher.accept_token(token):
                    break
                logits.zero_()
        rows.append([f"schema {i + 1}" if i < len(SCHEMAS) else "users (40+ items)",
                     statistics.median(compiles) * 1e3, statistics.median(fills) * 1e6,
                     statistics.median(masks) * 1e6])
    print(f"\n## xgrammar {_version('xgrammar')} on the same schemas (compile without its cache)\n")
    print(table(["grammar", "compile ms (median)", "mask fill µs", "fill + apply to logits µs"], rows))


# ---- http ---------------------------------------------------------------------------------------------------
def section_http(args, models: Path) -> None:
    import httpx
    import jsonschema
    import openai

    home = Path(tempfile.mkdtemp(prefix="tenfold-structured-"))
    port = 8000 + random.randint(200, 900)
    proc = start_server(home, models, args.threads, port)
    try:
        token = (home / "admin_key").read_text().strip()
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=token, max_retries=0, timeout=600)

        def metric(name: str) -> float:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {token}"}).text
            return sum(float(x.rsplit(" ", 1)[1]) for x in text.splitlines() if x.startswith(name + "{"))

        def ttft(schema: dict) -> float:
            start = time.perf_counter()
            stream = client.chat.completions.create(
                model=BASE_MODEL, messages=[{"role": "user", "content": "Describe a film as JSON."}],
                max_tokens=8, temperature=0, stream=True,
                response_format={"type": "json_schema", "json_schema": {"name": "film", "schema": schema}})
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    first = time.perf_counter() - start
                    stream.close()
                    return first
            raise SystemExit("no content streamed")

        base = dict(SCHEMAS[3][0])
        ttft(base)  # warm-up: the server's first request loads what it loads lazily
        compiles0, hits0 = metric("tenfold_engine_grammar_compiles_total"), \
            metric("tenfold_engine_grammar_cache_hits_total")
        new, cached = [], []
        for i in range(args.probes):
            fresh = json.loads(json.dumps(base))
            fresh["properties"]["genre"] = {"enum": [f"genre-{i}-{j}" for j in range(4)]}  # a new digest
            new.append(ttft(fresh))
            cached.append(ttft(base))
        compiles = metric("tenfold_engine_grammar_compiles_total") - compiles0
        hits = metric("tenfold_engine_grammar_cache_hits_total") - hits0
        print(f"\n## TTFT, streamed, one request at a time, {args.probes} probes each (threads={args.threads})\n")
        print(table(["schema", "TTFT p50 ms", "TTFT p90 ms"],
                    [["new (compiled for this request)", pct(new, 50) * 1e3, pct(new, 90) * 1e3],
                     ["cached (compiled before)", pct(cached, 50) * 1e3, pct(cached, 90) * 1e3]]))
        print(f"\ngrammar cache over the probes: {hits:.0f} hits, {compiles:.0f} compiles, hit rate "
              f"{hits / max(hits + compiles, 1):.2f} (every new schema misses once; the cached one always hits)")

        def answer(item: tuple[int, dict, str, bool]) -> tuple[bool, bool, str]:
            i, schema, prompt, constrained = item
            messages = [{"role": "system", "content": "Answer with JSON only, matching this JSON schema: "
                                                      + json.dumps(schema)},
                        {"role": "user", "content": prompt}]
            extra = {"response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema,
                                                                               "strict": True}}} if constrained else {}
            r = client.chat.completions.create(model=BASE_MODEL, messages=messages, max_tokens=120, temperature=0.7,
                                               seed=i, **extra)
            text = r.choices[0].message.content or ""
            try:
                jsonschema.validate(json.loads(text), schema)
                return True, r.choices[0].finish_reason == "stop", text
            except (ValueError, jsonschema.ValidationError):
                return False, r.choices[0].finish_reason == "stop", text

        rows = []
        for constrained in (False, True):
            items = [(i, s, p, constrained) for i, (s, p) in enumerate(SCHEMAS * args.per_schema)]
            with ThreadPoolExecutor(16) as pool:
                outs = list(pool.map(answer, items))
            rows.append(["response_format json_schema" if constrained else "schema in the prompt only",
                         len(outs), sum(ok for ok, _, _ in outs), sum(stop for _, stop, _ in outs),
                         sum(ok for ok, _, _ in outs) / len(outs)])
            bad = [t for ok, _, t in outs if not ok][:2]
            if bad:
                print(f"invalid examples ({rows[-1][0]}):", [b[:100] for b in bad])
        print(f"\n## validity: {len(SCHEMAS)} schemas x {args.per_schema}, temperature 0.7, max_tokens 120\n")
        print(table(["arm", "answers", "valid", "finish stop", "valid fraction"], rows))
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--section", default="all", choices=["throughput", "compile", "http", "all"])
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--output", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--probes", type=int, default=10)
    ap.add_argument("--per-schema", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models-dir", type=Path, default=default_models_dir())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model_path = resolve_model(args.models_dir)
    print(f"torch {torch.__version__}, threads={args.threads}, model {model_path}")
    if args.section in ("compile", "all"):
        section_compile(args, model_path)
    if args.section in ("throughput", "all"):
        section_throughput(args, model_path)
    if args.section in ("http", "all"):
        section_http(args, args.models_dir)


if __name__ == "__main__":
    main()
