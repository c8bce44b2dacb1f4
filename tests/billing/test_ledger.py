"""The ledger end to end on a server with odd prices (so rounding matters): random mixes of streamed,
cut-off, cached, plain and batch requests; the ledger rows, the usage API and the CSV export agree to the
micro-dollar; exports of sub-ranges union to the export of the range; the 31-day limit; spend limits."""

from __future__ import annotations

import csv
import io
import json
import random
import subprocess
import sys
import time
from decimal import Decimal
from fractions import Fraction

import httpx
import openai
import pytest

from tests.batch.helpers import line, read_lines, upload_batch_file, wait_batch
from tests.conftest import new_org_key, start_server, stop_server

PRICE = {"input_per_mtok": 1_234_567, "cached_input_per_mtok": 345_679, "output_per_mtok": 2_345_671,
         "batch_discount_bps": 5000}
MODEL = "tiny-random-llama"
SYSTEM = "You are the ledger test assistant. Keep every answer short and plain. " * 3


@pytest.fixture(scope="module")
def billed(tmp_path_factory, model_cache):
    s = start_server(tmp_path_factory.mktemp("billed"), model_cache,
                     extra_env={"TENFOLD_PRICES": json.dumps({MODEL: PRICE}), "TENFOLD_BATCH_POLL_SECONDS": "0.1"})
    yield s
    stop_server(s)


def expected_cost(u: dict) -> int:
    x = Fraction((u["prompt_tokens"] - u["cached_tokens"]) * PRICE["input_per_mtok"]
                 + u["cached_tokens"] * PRICE["cached_input_per_mtok"]
                 + u["completion_tokens"] * PRICE["output_per_mtok"], 1_000_000)
    if u["batch_id"]:
        x *= Fraction(10_000 - PRICE["batch_discount_bps"], 10_000)
    return int(x + Fraction(1, 2))


def all_rows(c: httpx.Client) -> list[dict]:
    rows, after = [], None
    while True:
        page = c.get("/usage", params={"limit": 100, "after": after}).json()
        rows += page["data"]
        if not page["has_more"]:
            return rows
        after = page["last_id"]


def csv_rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def _stream(oai, content, max_tokens) -> str:
    chunks = list(oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}],
                                              max_tokens=max_tokens, temperature=0, stream=True,
                                              stream_options={"include_usage": True}))
    assert chunks[-1].usage.completion_tokens == max_tokens or chunks[-2].choices[0].finish_reason == "stop"
    return chunks[0].id


def _cutoff(c: httpx.Client, content) -> str:
    body = {"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": 300, "stream": True}
    with c.stream("POST", "/chat/completions", json=body) as r:
        first = next(ln for ln in r.iter_lines() if ln.startswith("data: "))
    return json.loads(first[6:])["id"]


def test_random_mix_ledger_usage_api_and_csv_agree(billed):
    rng = random.Random(20261122)
    oai = openai.OpenAI(base_url=billed.base_url, api_key=billed.api_key, max_retries=0, timeout=120)
    t0 = time.time() - 1
    ids: list[str] = []
    batch_lines = []
    with billed.client() as c:
        for i in range(18):
            kind = rng.choice(["plain", "stream", "cutoff", "cached", "completion", "batch"])
            n = rng.randint(1, 6)
            if kind == "plain":
                ids.append(oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": f"q{i}"}],
                                                       max_tokens=n, temperature=0).id)
            elif kind == "stream":
                ids.append(_stream(oai, f"stream {i}", n))
            elif kind == "cutoff":
                ids.append(_cutoff(c, f"cut {i} " * 3))
            elif kind == "cached":
                r = oai.chat.completions.create(model=MODEL, max_tokens=n, temperature=0, messages=[
                    {"role": "system", "content": SYSTEM}, {"role": "user", "content": f"cached {i}"}])
                ids.append(r.id)
            elif kind == "completion":
                ids.append(oai.completions.create(model=MODEL, prompt=f"Once {i}", max_tokens=n, temperature=0).id)
            else:
                batch_lines.append(line(f"b{i}", f"batch {i}", max_tokens=n))
                batch_lines.append(line(f"b{i}-cached", f"batch {i}", max_tokens=n))
        fid = upload_batch_file(c, batch_lines or [line("only")]).json()["id"]
        b = c.post("/batches", json={"input_file_id": fid, "endpoint": "/v1/chat/completions",
                                     "completion_window": "24h"}).json()
        done = wait_batch(c, b["id"])
        assert done["status"] == "completed"
        ids += [o["id"] for o in read_lines(c, done["output_file_id"])]

        deadline = time.time() + 30  # cut-off streams are metered when the server notices the disconnect
        while time.time() < deadline:
            rows = [u for u in all_rows(c) if u["created_at"] >= int(t0)]
            if set(ids) <= {u["request_id"] for u in rows}:
                break
            time.sleep(0.2)
        t1 = time.time() + 1

        # the ledger: exactly one row per request, each priced exactly
        assert sorted(u["request_id"] for u in rows) == sorted(ids)
        for u in rows:
            assert u["cost_micro_usd"] == expected_cost(u), u
            assert (u["usage_type"] == "BATCH_INFERENCE_USAGE") == (u["batch_id"] is not None)
        assert any(u["cached_tokens"] > 0 and not u["batch_id"] for u in rows), "some prompts hit the prefix cache"
        assert any(u["finish_reason"] == "abort" or u["request_id"].startswith("chatcmpl") for u in rows)
        total = {"cost": sum(u["cost_micro_usd"] for u in rows), "prompt": sum(u["prompt_tokens"] for u in rows),
                 "cached": sum(u["cached_tokens"] for u in rows), "out": sum(u["completion_tokens"] for u in rows)}

        # the usage API, aggregated by day and by hour, grouped several ways
        for width, groups in (("1d", []), ("1h", ["model", "usage_type"]), ("1d", ["api_key_id", "batch_id"])):
            page = c.get("/usage", params={"start_time": str(t0), "end_time": str(t1), "bucket_width": width,
                                           "group_by": ",".join(groups)}).json()
            results = [r for bucket in page["data"] for r in bucket["results"]]
            for key, api_key in (("cost", "cost_micro_usd"), ("prompt", "input_tokens"),
                                 ("cached", "input_cached_tokens"), ("out", "output_tokens")):
                assert sum(r[api_key] for r in results) == total[key] == page["totals"][api_key], (width, groups)
            assert sum(r["num_model_requests"] for r in results) == len(rows)
            assert Decimal(page["totals"]["cost_usd"]) * 1_000_000 == total["cost"]
        by_type = c.get("/usage", params={"start_time": str(t0), "end_time": str(t1), "usage_types":
                                          "BATCH_INFERENCE_USAGE"}).json()["totals"]
        assert by_type["cost_micro_usd"] == sum(u["cost_micro_usd"] for u in rows if u["batch_id"])

        # the CSV: same rows, same money
        whole = c.get("/usage/export", params={"start_time": str(t0), "end_time": str(t1)})
        assert whole.status_code == 200 and whole.headers["content-type"].startswith("text/csv")
        lines = csv_rows(whole.text)
        assert list(lines[0].keys()) == ["email", "start_time", "end_time", "usage_type", "accelerator_type",
                                         "accelerator_seconds", "base_model_name", "model_bucket", "parameter_count",
                                         "prompt_tokens", "completion_tokens", "cached_prompt_tokens", "cost_usd"]
        assert len(lines) == len(rows)
        assert sum(Decimal(x["cost_usd"]) for x in lines) * 1_000_000 == total["cost"]
        assert sum(int(x["prompt_tokens"]) for x in lines) == total["prompt"]
        assert sum(int(x["cached_prompt_tokens"]) for x in lines) == total["cached"]

        # the export of a range is the union of the exports of its sub-ranges
        created = sorted(u["created_at"] for u in rows)
        cuts = sorted({t0, t1, *(rng.uniform(t0, t1) for _ in range(3)), float(created[len(created) // 2])})
        parts = []
        for a, b_ in zip(cuts, cuts[1:]):
            text = c.get("/usage/export", params={"start_time": repr(a), "end_time": repr(b_)}).text
            parts += text.splitlines()[1:]
        assert parts == whole.text.splitlines()[1:]


def test_export_range_rules_and_cli(billed, tmp_path):
    with billed.client() as c:
        r = c.get("/usage/export", params={"start_time": "2026-01-01", "end_time": "2026-02-02"})
        assert r.status_code == 400 and "at most 31 days" in r.json()["error"]["message"]
        assert c.get("/usage/export", params={"start_time": "2026-01-01", "end_time": "2026-02-01"}).status_code == 200
        r = c.get("/usage/export", params={"start_time": "2026-01-02", "end_time": "2026-01-01"})
        assert r.status_code == 400 and "after start_time" in r.json()["error"]["message"]
        r = c.get("/usage/export", params={"start_time": "yesterday", "end_time": "2026-01-01"})
        assert r.status_code == 400 and "ISO date" in r.json()["error"]["message"]
        r = c.get("/usage", params={"start_time": "2026-01-01", "group_by": "colour"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "group_by"
        c.post("/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": "x"}],
                                          "max_tokens": 2})
        day = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 86400))
        tomorrow = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 86400))
        api_csv = c.get("/usage/export", params={"start_time": day, "end_time": tomorrow}).text
    out = tmp_path / "jan.csv"
    env = {"TENFOLD_API_KEY": billed.api_key, "TENFOLD_BASE_URL": billed.url, "TENFOLD_CONFIG_DIR": str(tmp_path),
           "PATH": "/usr/bin:/bin"}
    p = subprocess.run([sys.executable, "-m", "tenfold.cli.main", "usage", "export", "--start-time", day,
                        "--end-time", tomorrow, "--filename", str(out)], env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr + p.stdout
    assert out.read_text() == api_csv and len(api_csv.splitlines()) >= 2
    p = subprocess.run([sys.executable, "-m", "tenfold.cli.main", "usage", "summary", "--start-time", day,
                        "--end-time", tomorrow, "--group-by", "model", "--json"], env=env, capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)
    assert summary["totals"]["num_model_requests"] == len(api_csv.splitlines()) - 1
    assert Decimal(summary["totals"]["cost_usd"]) == sum(Decimal(x["cost_usd"]) for x in csv_rows(api_csv))
    p = subprocess.run([sys.executable, "-m", "tenfold.cli.main", "usage", "export", "--start-time", "2026-01-01",
                        "--end-time", "2026-03-01", "--filename", str(out)], env=env, capture_output=True, text=True)
    assert p.returncode == 1 and "31 days" in (p.stdout + p.stderr)


def test_monthly_spend_limit_answers_429_naming_the_limit(billed):
    key = new_org_key(billed, "limited")
    body = {"model": MODEL, "messages": [{"role": "user", "content": "spend"}], "max_tokens": 4}
    with billed.client(key) as o, billed.client() as admin:
        org = o.get("/me").json()["organization_id"]
        r = o.put(f"/organizations/{org}/spend_limit", json={"monthly_spend_limit_usd": "1"})
        assert r.status_code == 403
        r = admin.put(f"/organizations/{org}/spend_limit", json={"monthly_spend_limit_usd": "0.00005"})
        assert r.status_code == 200 and r.json()["monthly_spend_limit_micro_usd"] == 50
        statuses = [o.post("/chat/completions", json=body) for _ in range(12)]
        codes = [s.status_code for s in statuses]
        assert codes[0] == 200 and 429 in codes, codes
        refused = statuses[codes.index(429)]
        err = refused.json()["error"]
        assert "monthly spend limit of $0.000050" in err["message"] and err["code"] == "spend_limit_exceeded"
        assert int(refused.headers["retry-after"]) > 0
        spent = o.get(f"/organizations/{org}/spend_limit").json()["spent_this_month_micro_usd"]
        assert spent >= 50
        # batch lines over the limit fail with the same 429 in the error file
        fid = upload_batch_file(o, [line("over")]).json()["id"]
        b = o.post("/batches", json={"input_file_id": fid, "endpoint": "/v1/chat/completions",
                                     "completion_window": "24h"}).json()
        done = wait_batch(o, b["id"])
        err_line = read_lines(o, done["error_file_id"])[0]
        assert err_line["custom_id"] == "over" and err_line["response"]["status_code"] == 429
        admin.put(f"/organizations/{org}/spend_limit", json={"monthly_spend_limit_usd": None})
        assert o.post("/chat/completions", json=body).status_code == 200
