"""The meter writes one row per request id, never two (retried writes, concurrent writes), and the
aggregation puts rows in the right day buckets with exact sums (store level, no server)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from tenfold.billing.export import aggregate, to_csv
from tenfold.billing.meter import Meter, UsageEntry
from tenfold.config import Price, Settings
from tenfold.store import repo
from tenfold.store.db import Database


def _entry(rid: str, **kw) -> UsageEntry:
    base = dict(request_id=rid, organization_id="org-1", api_key_id="key-1", endpoint="chat.completions",
                model="m", base_model="m", adapter_digest=None, checkpoint=None, prompt_tokens=1000,
                cached_tokens=400, completion_tokens=77, finish_reason="stop")
    return UsageEntry(**{**base, **kw})


def test_one_row_per_request_even_when_written_twice_or_concurrently(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    db.migrate()
    meter = Meter(Settings(home=tmp_path, prices={"m": Price(input_per_mtok=1_000_003, cached_input_per_mtok=7,
                                                             output_per_mtok=999_999)}), db)
    assert meter.record(_entry("r1")) is True
    assert meter.record(_entry("r1", completion_tokens=5)) is False  # a retried write charges nothing
    results = []
    threads = [threading.Thread(target=lambda: results.append(meter.record(_entry("r2")))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1
    assert meter.record(_entry("r3", batch_id="batch_x")) is True
    with db.session() as s:
        rows = repo.usage_in_range(s, organization_id="org-1", start=0, end=1e12)
    assert [r.request_id for r in rows] == ["r1", "r2", "r3"]
    assert rows[0].completion_tokens == 77
    numerator = 600 * 1_000_003 + 400 * 7 + 77 * 999_999  # micro-dollars × 1e6
    assert rows[0].cost_micro_usd == (numerator + 500_000) // 1_000_000 and rows[0].discount_bps == 0
    assert rows[2].usage_type == "BATCH_INFERENCE_USAGE" and rows[2].discount_bps == 5000
    assert rows[2].cost_micro_usd == (numerator + 1_000_000) // 2_000_000  # half price, rounded once, half up


def _row(t: float, cost: int, model: str = "m") -> SimpleNamespace:
    return SimpleNamespace(created_at=t, started_at=t - 0.5, prompt_tokens=10, cached_tokens=2, completion_tokens=3,
                           cost_micro_usd=cost, model=model, base_model="b", adapter_digest=None, checkpoint=None,
                           api_key_id="k", deployment_id=None, usage_type="TEXT_COMPLETION_INFERENCE_USAGE",
                           batch_id=None)


def test_day_buckets_and_group_sums():
    day = 86_400
    rows = [_row(5, 1), _row(day - 1, 2, "a"), _row(day, 4), _row(2 * day + 7, 8, "a")]
    page = aggregate(rows, start=0, end=3 * day, width=day, group_by=["model"])
    assert [b["start_time"] for b in page["data"]] == [0, day, 2 * day]
    assert [[(r["model"], r["cost_micro_usd"]) for r in b["results"]] for b in page["data"]] == \
        [[("a", 2), ("m", 1)], [("m", 4)], [("a", 8)]]
    assert page["totals"]["cost_micro_usd"] == 15 and page["totals"]["cost_usd"] == "0.000015"
    text = to_csv(rows, account="org-1")
    assert text.splitlines()[1] == ("org-1,1970-01-01 00:00:04 UTC,1970-01-01 00:00:05 UTC,"
                                    "TEXT_COMPLETION_INFERENCE_USAGE,,,b,m,,10,3,2,0.000001")


def test_group_by_adapter_checkpoint_deployment_and_key():
    rows = [_row(1, 1), _row(2, 2), _row(3, 4), _row(4, 8)]
    rows[1].adapter_digest, rows[1].checkpoint = "d1", "ftjob-a/step-2"
    rows[2].adapter_digest, rows[2].checkpoint, rows[2].deployment_id = "d1", None, "dep-1"
    rows[3].api_key_id = "k2"
    page = aggregate(rows, start=0, end=10, width=86_400,
                     group_by=["adapter", "checkpoint", "deployment_id", "api_key_id"])
    got = {(r["adapter"], r["checkpoint"], r["deployment_id"], r["api_key_id"]): r["cost_micro_usd"]
           for r in page["data"][0]["results"]}
    assert got == {(None, None, None, "k"): 1, ("d1", "ftjob-a/step-2", None, "k"): 2, ("d1", None, "dep-1", "k"): 4,
                   (None, None, None, "k2"): 8}
    assert page["data"][0]["end_time"] == 10  # the last bucket ends at end_time
