"""Store functions on SQLite and PostgreSQL: migrations, pagination, org scoping, and the job claim race."""

from __future__ import annotations

import threading

import pytest

from tenfold.jobs import lifecycle
from tenfold.store import repo
from tenfold.store.db import Database
from tests.conftest import fresh_pg_database


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path):
    if request.param == "sqlite":
        d = Database(f"sqlite:///{tmp_path / 't.db'}")
        d.migrate()
        yield d
        d.dispose()
        return
    with fresh_pg_database() as url:
        d = Database(url)
        d.migrate()
        yield d
        d.dispose()


def _org(d: Database) -> str:
    with d.session() as s:
        return repo.create_organization(s, name="o").id


def _job(d: Database, org: str, status: str = "queued") -> str:
    job_id = repo.new_id("ftjob-", 6)
    with d.session() as s:
        repo.create_job(s, job_id=job_id, organization_id=org, api_key_id=None, model="m", training_file="f",
                        validation_file=None, suffix=None, seed=1, spec={}, hyperparameters={}, status=status)
    return job_id


def test_migrate_is_idempotent_and_keys_hash(db):
    db.migrate()
    org = _org(db)
    with db.session() as s:
        row, secret = repo.create_api_key(s, organization_id=org, name="k")
        assert row.key_hash != secret and secret.startswith("tf-")
    with db.session() as s:
        assert repo.find_api_key(s, secret=secret).id == row.id
        assert repo.find_api_key(s, secret=secret + "x") is None


def test_pagination_newest_first_and_org_scoping(db):
    org, other = _org(db), _org(db)
    ids = [_job(db, org) for _ in range(5)]
    with db.session() as s:
        page1, more = repo.list_jobs(s, organization_id=org, limit=2, after=None)
        assert [j.id for j in page1] == ids[::-1][:2] and more
        page2, _ = repo.list_jobs(s, organization_id=org, limit=10, after=page1[-1].id)
        assert [j.id for j in page2] == ids[::-1][2:]
        assert repo.get_job(s, job_id=ids[0], organization_id=other) is None
        assert repo.list_jobs(s, organization_id=other, limit=10, after=None) == ([], False)


def test_exactly_one_worker_claims_each_job(db):
    org = _org(db)
    jobs = {_job(db, org) for _ in range(6)}
    claimed: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        while True:
            got = lifecycle.claim_next(db, worker_id=f"w{n}")
            if got is None:
                with db.session() as s:
                    if repo.next_queued_job_id(s) is None:
                        return
                continue
            with lock:
                claimed.append(got)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(claimed) == sorted(jobs)  # every job once, none twice


def test_stale_job_is_requeued(db):
    org = _org(db)
    job_id = _job(db, org)
    assert lifecycle.claim_next(db, worker_id="w") == job_id
    assert lifecycle.requeue_stale(db, lease_seconds=3600) == []
    with db.session() as s:
        repo.update_job(s, job_id=job_id, heartbeat_at=0.0)
    assert lifecycle.requeue_stale(db, lease_seconds=60) == [job_id]
    with db.session() as s:
        assert repo.get_job(s, job_id=job_id, organization_id=None).status == "queued"
    assert lifecycle.claim_next(db, worker_id="w2") == job_id
    with db.session() as s:
        assert repo.get_job(s, job_id=job_id, organization_id=None).attempt == 2


def _status(d: Database, job_id: str) -> str:
    with d.session() as s:
        return repo.get_job(s, job_id=job_id, organization_id=None).status


def test_validation_claim_lease_release_and_cancel(db):
    org = _org(db)
    job_id = _job(db, org, status="validating_files")
    assert lifecycle.claim_next(db, worker_id="t") is None  # training never takes a job that is not validated
    assert lifecycle.claim_validation(db, worker_id="a", lease_seconds=60) == job_id
    assert lifecycle.claim_validation(db, worker_id="b", lease_seconds=60) is None  # a holds it
    with db.session() as s:
        repo.update_job(s, job_id=job_id, heartbeat_at=0.0)  # a stopped renewing its lease
    assert lifecycle.claim_validation(db, worker_id="b", lease_seconds=60) == job_id
    with db.session() as s:
        assert not repo.finish_validation(s, job_id=job_id, worker_id="a")  # a's late result is dropped
    lifecycle.release_validations(db, worker_id="b")  # b stops cleanly: another worker may take it at once
    assert lifecycle.claim_validation(db, worker_id="c", lease_seconds=60) == job_id
    with db.session() as s:
        assert repo.finish_job(s, job_id=job_id, status="cancelled")
    with db.session() as s:
        assert not repo.finish_validation(s, job_id=job_id, worker_id="c")
    assert _status(db, job_id) == "cancelled"

    other = _job(db, org, status="validating_files")
    assert lifecycle.claim_validation(db, worker_id="c", lease_seconds=60) == other
    with db.session() as s:
        assert repo.finish_validation(s, job_id=other, worker_id="c")
    assert _status(db, other) == "queued"
    assert lifecycle.claim_next(db, worker_id="t") == other


def test_usage_recorded_once_per_request(db):
    from tenfold.billing.meter import Meter, UsageEntry
    from tenfold.config import Settings

    org = _org(db)
    meter = Meter(Settings(), db)
    e = UsageEntry(request_id="req-1", organization_id=org, api_key_id="k", endpoint="chat.completions", model="m",
                   base_model="smollm2-135m-instruct", adapter_digest=None, checkpoint=None, prompt_tokens=1_000_000,
                   cached_tokens=500_000, completion_tokens=1_000_000, finish_reason="stop")
    meter.record(e)
    meter.record(e)
    with db.session() as s:
        rows, _ = repo.list_usage(s, organization_id=org, limit=10, after=None)
    assert len(rows) == 1
    # 0.5M input at 20_000 + 0.5M cached at 10_000 + 1M output at 40_000 micro-USD per Mtok
    assert rows[0].cost_micro_usd == 10_000 + 5_000 + 40_000
