"""The migrations build exactly the schema the ORM declares (alembic's own comparison), on SQLite and on the
PostgreSQL server: a column added to a table without a migration, or a migration the tables do not match,
fails here instead of on a user's upgrade."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from tenfold.store.db import Database
from tenfold.store.tables import Base
from tests.conftest import fresh_pg_database


def _diff(db: Database) -> list:
    db.migrate()
    with db.engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), Base.metadata)


def test_migrations_match_the_tables_on_sqlite(tmp_path):
    assert _diff(Database(f"sqlite:///{tmp_path / 'schema.db'}")) == []


@pytest.mark.postgres
def test_migrations_match_the_tables_on_postgres():
    with fresh_pg_database() as url:
        db = Database(url)
        try:
            assert _diff(db) == []
        finally:
            db.dispose()
