"""Migration 0004 upgrades a database that already holds files: their token counts are unknown (null), and
new uploads store them."""

from __future__ import annotations

from sqlalchemy import text

from tenfold.store import repo
from tenfold.store.db import Database


def test_0004_keeps_old_files_without_counts(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    db.migrate("0003")
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO organizations (id, name, created_at) VALUES ('org-1', 'o', 1.0)"))
        conn.execute(text("INSERT INTO files (id, organization_id, filename, purpose, bytes, storage_key, n_examples, "
                          "data_format, created_at) VALUES ('file-1', 'org-1', 'a.jsonl', 'fine-tune', 10, 'k', 3, "
                          "'messages', 1.0)"))
    db.migrate()
    with db.session() as s:
        old = repo.get_file(s, organization_id="org-1", file_id="file-1")
        assert (old.n_examples, old.n_tokens, old.max_example_tokens, old.tokenizer) == (3, None, None, None)
        new = repo.create_file(s, organization_id="org-1", file_id="file-2", filename="b.jsonl", purpose="fine-tune",
                               nbytes=5, storage_key="k2", n_examples=1, data_format="messages", n_tokens=42,
                               max_example_tokens=42, tokenizer="smollm2-135m-instruct")
        assert new.n_tokens == 42
