"""Persistence: database engine, ORM rows, queries and Alembic migrations."""
