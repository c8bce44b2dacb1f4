"""Shared fixtures: a model cache with the tiny test model, and real ``tenfold serve`` processes on loopback
(SQLite by default, PostgreSQL on 127.0.0.1:5432 for the ``pg_server`` fixture)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

TINY = "tiny-random-llama"
PG_ADMIN_URL = os.environ.get("TENFOLD_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    """A models folder holding the tiny model; exported so server subprocesses reuse it."""
    cache = Path(os.environ.get("TENFOLD_TEST_MODEL_CACHE") or tmp_path_factory.mktemp("models"))
    from tenfold.models.registry import resolve_base_model

    resolve_base_model(TINY, models_dir=cache)
    return cache


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    base_url: str
    api_key: str
    home: Path
    proc: subprocess.Popen
    log: Path

    def client(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers={"Authorization": f"Bearer {key or self.api_key}"},
                            timeout=120)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def server_env(home: Path, model_cache: Path, *, database_url: str | None = None, extra_env: dict | None = None
               ) -> dict:
    env = {**os.environ, "TENFOLD_HOME": str(home), "TENFOLD_BASE_MODEL": TINY, "TENFOLD_MODEL_CACHE": str(model_cache),
           "TENFOLD_TORCH_THREADS": "1", "TENFOLD_WORKER_POLL_SECONDS": "0.2", "TENFOLD_JOB_HEARTBEAT_SECONDS": "1",
           "HF_HUB_OFFLINE": "1",  # tests never reach a hub: a Hugging Face id fails at once instead of waiting
           # tests assert exact tokens in float32; the 16-bit formats have their own tests (engine/test_number_format)
           "TENFOLD_ENGINE_DTYPE": "float32", "TENFOLD_TRAIN_DTYPE": "float32",
           **(extra_env or {})}
    env.pop("TENFOLD_DATABASE_URL", None)
    if database_url:
        env["TENFOLD_DATABASE_URL"] = database_url
    return env


def start_server(home: Path, model_cache: Path, *, database_url: str | None = None, extra_env: dict | None = None,
                 role: str = "all") -> Server:
    """``tenfold serve`` on a free port; ``role="api"`` runs no worker (jobs wait in their first status)."""
    port = free_port()
    env = server_env(home, model_cache, database_url=database_url, extra_env=extra_env)
    home.mkdir(parents=True, exist_ok=True)
    log = home / "server.log"
    proc = subprocess.Popen([sys.executable, "-m", "tenfold.cli.main", "serve", "--host", "127.0.0.1", "--port",
                             str(port), "--role", role], env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tenfold serve exited early:\n{log.read_text()}")
        try:
            if httpx.get(url + "/health", timeout=2).json().get("status") == "ok":
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    else:
        proc.kill()
        raise RuntimeError(f"tenfold serve did not become ready:\n{log.read_text()}")
    key = (home / "admin_key").read_text().strip()
    return Server(url=url, base_url=url + "/v1", api_key=key, home=home, proc=proc, log=log)


def stop_server(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.proc.kill()


@pytest.fixture(scope="session")
def server(tmp_path_factory, model_cache):
    s = start_server(tmp_path_factory.mktemp("home"), model_cache)
    yield s
    stop_server(s)


@contextmanager
def fresh_pg_database():
    """A new, empty PostgreSQL database on loopback, dropped afterwards."""
    from sqlalchemy import create_engine, text

    name = f"tenfold_test_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as e:  # the suite's PostgreSQL tests must not be skipped silently in CI
        pytest.fail(f"PostgreSQL on 127.0.0.1:5432 is needed for this test: {e}")
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as c:
            c.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture(scope="session")
def pg_database_url():
    with fresh_pg_database() as url:
        yield url


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory, model_cache, pg_database_url):
    s = start_server(tmp_path_factory.mktemp("pghome"), model_cache, database_url=pg_database_url)
    yield s
    stop_server(s)


def new_org_key(server: Server, name: str = "other") -> str:
    """Create a second organization and return an API key for it (via the admin endpoints)."""
    with server.client() as c:
        org = c.post("/organizations", json={"name": name}).json()
        return c.post("/api_keys", json={"organization_id": org["id"], "name": name}).json()["key"]


def wait_for(what: str, check, timeout: float = 120.0, every: float = 0.3):
    """Poll ``check`` until it returns something truthy (returned), failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def wait_openai_batch(oai, batch_id: str, timeout: float = 300.0):
    """An OpenAI-SDK batch once it has ended (completed, failed or cancelled)."""
    return wait_for(f"batch {batch_id}", lambda: (b := oai.batches.retrieve(batch_id)).status in (
        "completed", "failed", "expired", "cancelled") and b, timeout=timeout, every=0.5)

