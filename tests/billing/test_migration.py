"""Migration 0003 upgrades a database that already holds 0001-era usage rows (no data lost, new columns
filled with their defaults)."""

from __future__ import annotations

from sqlalchemy import text

from tenfold.store.db import Database


def test_upgrade_keeps_old_usage_rows(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    db.migrate("0001")
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO usage_records (id, organization_id, api_key_id, request_id, endpoint, model, "
                          "base_model, prompt_tokens, cached_tokens, completion_tokens, cost_micro_usd, created_at) "
                          "VALUES ('usage-1', 'org-1', 'key-1', 'r1', 'chat.completions', 'm', 'm', 5, 0, 2, 7, 1.0)"))
    db.migrate()
    with db.engine.begin() as conn:
        row = conn.execute(text("SELECT usage_type, discount_bps, batch_id, cost_micro_usd FROM usage_records")).one()
        assert tuple(row) == ("TEXT_COMPLETION_INFERENCE_USAGE", 0, None, 7)
        assert conn.execute(text("SELECT count(*) FROM batches")).scalar() == 0
