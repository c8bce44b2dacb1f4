"""The OpenAPI document says exactly what the server does: schemathesis (a real client others wrote) runs
every phase (examples, coverage, fuzzing, stateful) and every check against a live ``tenfold serve`` on the
tiny model with a fresh ``TENFOLD_HOME``: a member key for every route, the admin key for admin routes
only, ids of real resources (a file, a trained job deployed as an adapter, a batch). Zero failures, zero
5xx. Relaxations (rules JSON Schema cannot state) are in ``schemathesis.toml`` and listed in docs/api.md.
``make contract`` runs the same with many more examples."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.api.helpers import TRAIN_ROWS, jsonl, upload, wait_job
from tests.conftest import start_server, stop_server

CONFIG = Path(__file__).with_name("schemathesis.toml")
TINY = "tiny-random-llama"
MAX_EXAMPLES = int(os.environ.get("TENFOLD_CONTRACT_EXAMPLES", "10"))
SEED = os.environ.get("TENFOLD_CONTRACT_SEED", "20261205")  # empty: a new seed each run (make contract)


def _org_key(c: httpx.Client, name: str) -> tuple[str, str]:
    org = c.post("/organizations", json={"name": name}).json()["id"]
    key = c.post("/api_keys", json={"organization_id": org, "name": name}).json()["key"]
    return org, key


def _resources(server) -> dict[str, str]:
    """A member organization with a file, a trained and deployed job and a batch; another organization."""
    with server.client() as admin:
        member_org, member_key = _org_key(admin, "member")
        other_org, _ = _org_key(admin, "other")
    with server.client(member_key) as c:
        file_id = upload(c, jsonl(TRAIN_ROWS)).json()["id"]
        job = c.post("/fine_tuning/jobs", json={"model": TINY, "training_file": file_id, "seed": 1, "hyperparameters": {
            "n_epochs": 1, "batch_size": 4, "lora_r": 2, "lora_alpha": 4, "checkpoint_every": 2}}).json()
        assert wait_job(c, job["id"])["status"] == "succeeded"
        assert c.post("/adapters", json={"model": job["id"]}).status_code == 200
        line = ('{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "%s", '
                '"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}}\n' % job["id"])
        batch_file = c.post("/files", files={"file": ("b.jsonl", line.encode(), "application/jsonl")},
                            data={"purpose": "batch"}).json()["id"]
        batch = c.post("/batches", json={"input_file_id": batch_file, "endpoint": "/v1/chat/completions",
                                         "completion_window": "24h"}).json()
    return {"TENFOLD_MEMBER_KEY": member_key, "TENFOLD_MEMBER_ORG": member_org, "TENFOLD_OTHER_ORG": other_org,
            "TENFOLD_FILE_ID": file_id, "TENFOLD_JOB_ID": job["id"], "TENFOLD_BATCH_ID": batch["id"]}


@pytest.fixture(scope="module")
def live(tmp_path_factory, model_cache):
    home = tmp_path_factory.mktemp("contract-home")
    s = start_server(home, model_cache)
    try:
        env = _resources(s)
    finally:
        stop_server(s)
    # The run itself needs no training worker: jobs it creates stay queued instead of taking the CPU.
    s = start_server(home, model_cache, role="api")
    yield s, {**env, "TENFOLD_ADMIN_KEY": s.api_key}
    stop_server(s)


def run_schemathesis(url: str, env: dict[str, str], *, max_examples: int, extra: list[str] = ()) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "run", url + "/openapi.json",
           "--checks", "all", "--phases", "examples,coverage,fuzzing,stateful", "--max-examples", str(max_examples),
           "--workers", "1", *extra]
    return subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True, timeout=1800)


@pytest.mark.timeout(900)
def test_the_server_keeps_its_openapi_contract(live):
    server, env = live
    out = run_schemathesis(server.url, env, max_examples=MAX_EXAMPLES, extra=["--seed", SEED] if SEED else [])
    report = out.stdout[-12000:] + out.stderr[-3000:]
    if os.environ.get("TENFOLD_CONTRACT_LOG"):
        Path(os.environ["TENFOLD_CONTRACT_LOG"]).write_text(out.stdout + out.stderr)
    assert out.returncode == 0, report
    summary = out.stdout.split("SUMMARY")[-1]
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert f"✅ {phase}" in summary, report  # every phase ran and found nothing
    generated = re.search(r"(\d+) generated, (\d+) passed", summary)
    assert generated and generated.group(1) == generated.group(2) and int(generated.group(1)) > 1000, report
