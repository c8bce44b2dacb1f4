"""Dedicated deployments on a real ``tenfold serve``, side by side.

1. Cold start: a deployment of the embedded model (SmolLM2-135M-Instruct) at zero replicas; seconds from the
   first request (answered 503 ``DEPLOYMENT_SCALING_UP``) to the first token, retrying at once.
2. Router overhead: time to first token of 128-token prompts (streamed ``/v1/completions``, each prompt new so
   each prefills), through the api (auth, routing, metering, the router's replica choice) vs the same token
   ids sent straight to the replica (with its secret), interleaved; p50 and p99 of each.
3. Throughput with 1 vs 2 replicas of the tiny test model (a deployment updated from 1 to 2), the same
   concurrent load; on a 2-core machine two replicas share the same two cores.

    .venv/bin/python bench/deployments.py [--probes 30] [--threads 1] [--section cold|ttft|throughput|all]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BASE_MODEL, default_models_dir, resolve_model, start_server, table  # noqa: E402

TINY = "tiny-random-llama"


def start(home: Path, models: Path, threads: int, port: int) -> subprocess.Popen:
    return start_server(home, models, threads, port, role="api", env={
        "TENFOLD_REPLICA_TORCH_THREADS": str(threads), "TENFOLD_CONTROLLER_INTERVAL_SECONDS": "0.2",
        "TENFOLD_AUTOSCALE_UP_WINDOW_SECONDS": "5"})


def wait_healthy(c: httpx.Client, dep_id: str, n: int = 1, timeout: float = 600) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        d = c.get(f"/deployments/{dep_id}").json()
        if sum(r["healthy"] for r in d["replicas"]) >= n:
            return d
        time.sleep(0.2)
    raise SystemExit(f"{dep_id}: no {n} healthy replica(s) in {timeout}s")


def first_token(client: httpx.Client, url: str, body: dict, headers: dict | None = None) -> float:
    t0 = time.perf_counter()
    with client.stream("POST", url, json=body, headers=headers) as r:
        if r.status_code != 200:
            raise RuntimeError(f"{r.status_code}: {r.read()[:300]!r}")
        lines = r.iter_lines()
        for line in lines:
            if line.startswith("data: {") and json.loads(line[6:]).get("choices"):
                first = time.perf_counter() - t0
                for _ in lines:  # drain
                    pass
                return first
    raise RuntimeError("no token")


def cold_start(c: httpx.Client) -> list[list[object]]:
    d = c.post("/deployments", json={"base_model": BASE_MODEL, "min_replicas": 0, "max_replicas": 1,
                                     "scale_down_window_s": 600}).json()
    body = {"model": d["id"], "prompt": "Hello", "max_tokens": 1, "stream": True}
    t0, refused = time.perf_counter(), 0
    while True:
        try:
            ttft = first_token(c, "/completions", body)
            break
        except RuntimeError as e:
            if "503" not in str(e):
                raise
            refused += 1
            time.sleep(0.1)
    total = time.perf_counter() - t0
    c.delete(f"/deployments/{d['id']}")
    return [["cold start: first request to first token (s)", total, f"{refused} requests answered 503 meanwhile; "
             f"the last one's TTFT {ttft * 1000:.0f} ms"]]


def ttft(c: httpx.Client, home: Path, probes: int, prompt_tokens: int) -> list[list[object]]:
    d = c.post("/deployments", json={"base_model": BASE_MODEL}).json()
    rep = wait_healthy(c, d["id"])["replicas"][0]
    secret = sqlite3.connect(home / "tenfold.db").execute("select secret from deployments where id = ?",
                                                          (d["id"],)).fetchone()[0]
    rng = random.Random(7)
    direct_client = httpx.Client(timeout=120)
    router, direct = [], []
    for i in range(probes + 2):
        ids = [rng.randrange(1000, 40000) for _ in range(prompt_tokens)]  # new every time: every probe prefills
        body = {"prompt": ids, "max_tokens": 1, "stream": True, "temperature": 0}
        arms = [("router", lambda: first_token(c, "/completions", {**body, "model": d["id"]})),
                ("direct", lambda: first_token(direct_client, rep["endpoint"] + "/v1/completions",
                                               {**body, "model": BASE_MODEL}, {"Authorization": f"Bearer {secret}"}))]
        if i % 2:
            arms.reverse()
        for name, run in arms:
            ids[0] = rng.randrange(1000, 40000)
            seconds = run()
            if i >= 2:  # the first rounds warm both paths
                (router if name == "router" else direct).append(seconds)
    c.delete(f"/deployments/{d['id']}")
    p = lambda xs, q: sorted(xs)[min(len(xs) - 1, int(round(q * len(xs))) - 1)]  # noqa: E731
    r50, d50 = statistics.median(router), statistics.median(direct)
    return [["TTFT p50 through the api (ms)", r50 * 1000, f"p99 {p(router, 0.99) * 1000:.1f} ms"],
            ["TTFT p50 straight to the replica (ms)", d50 * 1000, f"p99 {p(direct, 0.99) * 1000:.1f} ms"],
            ["router overhead at p50", (r50 - d50) / d50, f"{(r50 - d50) * 1000:.1f} ms (bar: <= 5 %)"]]


def load(c: httpx.Client, model: str, seconds: float, concurrency: int, max_tokens: int) -> float:
    stop, tokens, lock = time.monotonic() + seconds, [0], threading.Lock()

    def run() -> None:
        while time.monotonic() < stop:
            r = c.post("/completions", json={"model": model, "prompt": "Once upon a time", "max_tokens": max_tokens,
                                             "ignore_eos": True, "temperature": 1.0})
            if r.status_code == 200:
                with lock:
                    tokens[0] += r.json()["usage"]["completion_tokens"]

    t0 = time.monotonic()
    workers = [threading.Thread(target=run) for _ in range(concurrency)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return tokens[0] / (time.monotonic() - t0)


def throughput(c: httpx.Client, seconds: float, concurrency: int) -> list[list[object]]:
    d = c.post("/deployments", json={"base_model": TINY, "min_replicas": 1, "max_replicas": 1}).json()
    wait_healthy(c, d["id"])
    load(c, d["id"], 3, concurrency, 64)  # warm-up
    one = load(c, d["id"], seconds, concurrency, 64)
    c.patch(f"/deployments/{d['id']}", json={"min_replicas": 2, "max_replicas": 2})
    wait_healthy(c, d["id"], 2)
    load(c, d["id"], 3, concurrency, 64)
    two = load(c, d["id"], seconds, concurrency, 64)
    c.delete(f"/deployments/{d['id']}")
    return [["tiny model, 1 replica (output tok/s)", one, f"{concurrency} concurrent requests of 64 tokens"],
            ["tiny model, 2 replicas (output tok/s)", two, f"ratio 2/1: {two / one:.2f}"]]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--section", choices=["cold", "ttft", "throughput", "all"], default="all")
    ap.add_argument("--probes", type=int, default=30)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the api and of each replica")
    ap.add_argument("--seconds", type=float, default=20.0, help="load duration per throughput arm")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--port", type=int, default=18531)
    ap.add_argument("--models-dir", type=Path, default=default_models_dir())
    args = ap.parse_args()
    resolve_model(args.models_dir)  # convert once, outside the timings
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        proc = start(home, args.models_dir, args.threads, args.port)
        try:
            key = (home / "admin_key").read_text().strip()
            with httpx.Client(base_url=f"http://127.0.0.1:{args.port}/v1", timeout=600,
                              headers={"Authorization": f"Bearer {key}"}) as c:
                if args.section in ("cold", "all"):
                    rows += cold_start(c)
                if args.section in ("ttft", "all"):
                    rows += ttft(c, home, args.probes, args.prompt)
                if args.section in ("throughput", "all"):
                    rows += throughput(c, args.seconds, args.concurrency)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    print(f"threads={args.threads} per process, probes={args.probes}, prompt={args.prompt} tokens, cpus={os.cpu_count()}")
    print(table(["measure", "value", "note"], rows))


if __name__ == "__main__":
    main()
