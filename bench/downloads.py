"""Weights out, side by side: streaming a job's merged model (the embedded SmolLM2-135M-Instruct, merged with a
LoRA adapter) as ``.tar.zst`` from a real ``tenfold serve`` vs ``tar -cf - DIR | zstd -3`` of the same folder.

1. Train a small LoRA job on the embedded model (a few steps) and download its merged archive once (that
   first download merges, in a subprocess, and caches the merged folder; timed separately).
2. Interleaved rounds: the server download (``GET /v1/fine_tuning/jobs/{id}/content?checkpoint_type=merged``
   read to the end by httpx) vs the reference pipeline writing to /dev/null; MB/s of the folder's bytes and
   the ratio (target ≥ 0.8×).
3. Peak memory while streaming: the server process's resident set sampled every 10 ms during each download,
   minus its resident set just before; for the merged archive and for the adapter archive (100× smaller), so
   bounded memory shows as the same small delta for both.

    .venv/bin/python bench/downloads.py [--rounds 3] [--threads 2] [--models-dir DIR]
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BASE_MODEL, default_models_dir, resolve_model, start_server, table  # noqa: E402

ROWS = [{"messages": [{"role": "user", "content": f"What is {a} plus {b}?"},
                      {"role": "assistant", "content": str(a + b)}]} for a in range(4) for b in range(4)]


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class PeakRss:
    """Samples a process's resident set every 10 ms; ``delta_mb`` = peak during the block minus the start."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self.start, self._stop = pid, 0, 0, threading.Event()

    def __enter__(self) -> PeakRss:
        self.start = self.peak = rss_kb(self.pid)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss_kb(self.pid))

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def delta_mb(self) -> float:
        return (self.peak - self.start) / 1024


def download(c: httpx.Client, job: str, kind: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    n = 0
    with c.stream("GET", f"/fine_tuning/jobs/{job}/content", params={"checkpoint_type": kind}) as r:
        if r.status_code != 200:
            raise SystemExit(f"{r.status_code}: {r.read()[:300]!r}")
        for chunk in r.iter_raw(1 << 20):
            n += len(chunk)
    return time.perf_counter() - t0, n


def reference(folder: Path) -> tuple[float, int]:
    t0 = time.perf_counter()
    out = subprocess.run(f"tar -cf - -C {folder.parent} {folder.name} | zstd -3 -q -c | wc -c", shell=True,
                         check=True, capture_output=True, text=True).stdout
    return time.perf_counter() - t0, int(out.strip())


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models-dir", type=Path, default=default_models_dir())
    args = ap.parse_args()
    models = args.models_dir
    resolve_model(models)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        proc = start_server(home, models, args.threads, 8941)
        try:
            key = (home / "admin_key").read_text().strip()
            c = httpx.Client(base_url="http://127.0.0.1:8941/v1", headers={"Authorization": f"Bearer {key}"},
                             timeout=3600)
            data = "\n".join(json.dumps(r) for r in ROWS).encode()
            fid = c.post("/files", files={"file": ("t.jsonl", io.BytesIO(data))}, data={"purpose": "fine-tune"}
                         ).json()["id"]
            job = c.post("/fine_tuning/jobs", json={"model": BASE_MODEL, "training_file": fid, "hyperparameters": {
                "n_epochs": 1, "batch_size": 8, "lora_r": 8}}).json()["id"]
            t0 = time.time()
            while (status := c.get(f"/fine_tuning/jobs/{job}").json()["status"]) not in ("succeeded", "failed"):
                if time.time() - t0 > 1800:
                    raise SystemExit("training did not finish")
                time.sleep(1)
            if status != "succeeded":
                raise SystemExit(f"job {status}: {c.get(f'/fine_tuning/jobs/{job}').json()['error']}")
            with PeakRss(proc.pid) as first_peak:
                first, _ = download(c, job, "merged")
            merged = home / "artifacts" / "jobs" / job / "merged" / "final"
            size = folder_bytes(merged)
            rows, mem = [], []
            for i in range(args.rounds):
                with PeakRss(proc.pid) as peak:
                    t_srv, n_srv = download(c, job, "merged")
                t_ref, n_ref = reference(merged)
                with PeakRss(proc.pid) as peak_small:
                    t_small, n_small = download(c, job, "adapter")
                rows.append([i + 1, size / 1e6 / t_srv, size / 1e6 / t_ref, t_ref / t_srv, n_srv / 1e6, n_ref / 1e6])
                mem.append([i + 1, n_srv / 1e6, peak.delta_mb, n_small / 1e6, peak_small.delta_mb])
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    print(f"# merged archive of {BASE_MODEL}: folder {size / 1e6:.0f} MB; first download (merge in a subprocess + "
          f"stream) {first:.1f} s; CPU {cpu}; server torch threads {args.threads}\n")
    print(table(["round", "server MB/s", "tar | zstd -3 MB/s", "ratio (≥ 0.8)", "server archive MB",
                 "reference archive MB"], rows))
    print()
    print(f"server RSS before the first download {first_peak.start / 1024:.0f} MB, peak during it "
          f"{first_peak.peak / 1024:.0f} MB (Δ {first_peak.delta_mb:.1f} MB); each round below: peak during the "
          "download minus the RSS just before it\n")
    print(table(["round", "merged archive MB", "server RSS peak Δ MB", "adapter archive MB",
                 "server RSS peak Δ MB (adapter)"], mem))


if __name__ == "__main__":
    main()
