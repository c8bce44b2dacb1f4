"""Helpers for api tests: a small valid training file and waiting for a job."""

from __future__ import annotations

import json
import time

import httpx

TRAIN_ROWS = [
    {"messages": [{"role": "user", "content": f"What is {a} plus {b}?"},
                  {"role": "assistant", "content": f"ANSWER: {a + b}"}]}
    for a in range(1, 5) for b in range(1, 4)
]


def jsonl(rows) -> bytes:
    return ("\n".join(json.dumps(r) for r in rows) + "\n").encode()


def upload(client: httpx.Client, data: bytes, name: str = "train.jsonl") -> httpx.Response:
    return client.post("/files", files={"file": (name, data, "application/jsonl")}, data={"purpose": "fine-tune"})


def wait_job(client: httpx.Client, job_id: str, *, until=("succeeded", "failed", "cancelled"), timeout=300) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.get(f"/fine_tuning/jobs/{job_id}").json()
        if job["status"] in until:
            return job
        time.sleep(0.3)
    raise TimeoutError(f"job {job_id} still {job['status']} after {timeout}s")


def train_tiny(client: httpx.Client, *, checkpoint_every: int = 2, n_epochs: int = 2, learning_rate: float = 5e-3
               ) -> dict:
    fid = upload(client, jsonl(TRAIN_ROWS)).json()["id"]
    r = client.post("/fine_tuning/jobs", json={
        "model": "tiny-random-llama", "training_file": fid, "seed": 7,
        "hyperparameters": {"n_epochs": n_epochs, "batch_size": 4, "learning_rate": learning_rate, "lora_r": 4,
                            "lora_alpha": 8, "checkpoint_every": checkpoint_every}})
    r.raise_for_status()
    return r.json()
