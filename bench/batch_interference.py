"""Interactive time-to-first-token with and without a Batch API batch running on the same server.

Workload (defaults): a real ``tenfold serve`` (SmolLM2-135M-Instruct float32 on CPU, torch threads pinned)
on a fresh home. Interactive probe: one streaming chat request at a time (short question, 8 new tokens,
greedy); TTFT = time from sending the request to the first content chunk, end-to-end over HTTP. Batch
load: a batch of B chat lines (64 new tokens each) fed by the batch runner at engine priority 1 with its
default concurrency. Arms, measured in one run and interleaved: (a) probes alone, (b) probes while the
batch is in progress (the batch is started before and cancelled after), then (a) again. The issue's bar:
(b)'s median TTFT within 1.2x of (a)'s.

    .venv/bin/python bench/batch_interference.py [--probes 12] [--batch-lines 64] [--threads 2] [--models-dir DIR]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BASE_MODEL, default_models_dir, resolve_model, start_server, table  # noqa: E402

QUESTIONS = ["Why is the sky blue?", "How do bicycles work?", "Why does bread rise?", "How do planes fly?"]


def start(home: Path, models: Path, threads: int, port: int) -> subprocess.Popen:
    return start_server(home, models, threads, port, timeout=180)


def ttft(c: httpx.Client, question: str) -> float:
    body = {"model": BASE_MODEL, "messages": [{"role": "user", "content": question}], "max_tokens": 8,
            "temperature": 0, "stream": True}
    t0 = time.perf_counter()
    with c.stream("POST", "/chat/completions", json=body) as r:
        lines = r.iter_lines()
        for ln in lines:
            if ln.startswith("data: ") and ln != "data: [DONE]":
                delta = json.loads(ln[6:])["choices"][0]["delta"]
                if delta.get("content"):
                    first = time.perf_counter() - t0
                    for _ in lines:  # drain
                        pass
                    return first
    raise RuntimeError("no content chunk")


def probes(c: httpx.Client, n: int) -> list[float]:
    return [ttft(c, QUESTIONS[i % len(QUESTIONS)]) for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--probes", type=int, default=12)
    ap.add_argument("--batch-lines", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--port", type=int, default=18431)
    ap.add_argument("--models-dir", type=Path, default=default_models_dir())
    args = ap.parse_args()
    resolve_model(args.models_dir)  # convert once, outside the timings
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        proc = start(home, args.models_dir, args.threads, args.port)
        try:
            key = (home / "admin_key").read_text().strip()
            with httpx.Client(base_url=f"http://127.0.0.1:{args.port}/v1", timeout=600,
                              headers={"Authorization": f"Bearer {key}"}) as c:
                probes(c, 3)  # warm-up
                alone1 = probes(c, args.probes)
                lines = [{"custom_id": f"l{i}", "method": "POST", "url": "/v1/chat/completions",
                          "body": {"model": BASE_MODEL, "max_tokens": 64, "temperature": 0, "messages": [
                              {"role": "user", "content": f"Write a long story about item {i}."}]}}
                         for i in range(args.batch_lines)]
                data = "".join(json.dumps(x) + "\n" for x in lines).encode()
                fid = c.post("/files", files={"file": ("b.jsonl", io.BytesIO(data))}, data={"purpose": "batch"}
                             ).json()["id"]
                bid = c.post("/batches", json={"input_file_id": fid, "endpoint": "/v1/chat/completions",
                                               "completion_window": "24h"}).json()["id"]
                while c.get(f"/batches/{bid}").json()["status"] != "in_progress":
                    time.sleep(0.1)
                time.sleep(1.0)
                loaded = probes(c, args.probes)
                b = c.get(f"/batches/{bid}").json()
                still = b["status"] == "in_progress"
                done_during = b["request_counts"]["completed"]
                c.post(f"/batches/{bid}/cancel")
                while c.get(f"/batches/{bid}").json()["status"] != "cancelled":
                    time.sleep(0.2)
                alone2 = probes(c, args.probes)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    alone = alone1 + alone2
    med_a, med_b = statistics.median(alone), statistics.median(loaded)
    p90 = lambda xs: sorted(xs)[max(0, int(round(0.9 * len(xs))) - 1)]  # noqa: E731
    print(f"threads={args.threads} probes={args.probes} batch_lines={args.batch_lines} "
          f"batch still running at the end of (b): {still}; batch lines finished during (b): {done_during}")
    print(table(["arm", "median TTFT ms", "p90 TTFT ms", "runs"], [
        ["(a) interactive alone, before", statistics.median(alone1) * 1000, p90(alone1) * 1000, len(alone1)],
        ["(b) interactive + batch", med_b * 1000, p90(loaded) * 1000, len(loaded)],
        ["(a) interactive alone, after", statistics.median(alone2) * 1000, p90(alone2) * 1000, len(alone2)],
    ]))
    print(f"ratio median (b)/(a): {med_b / med_a:.2f}  (bar: <= 1.20)")


if __name__ == "__main__":
    main()
