"""``tenfold serve``: bootstrap (home folder, migrations, first-start organization and admin key), build
the engine and the app, and run uvicorn.

Owns: process start-up and what it prints: where it listens and, on first start only, the admin key
(also saved to ``$TENFOLD_HOME/admin_key`` with mode 0600).
"""

from __future__ import annotations

import logging
import os
import sys

from tenfold.config import Settings, get_settings
from tenfold.store import repo
from tenfold.store.db import Database


def bootstrap(settings: Settings, db: Database) -> str | None:
    """Migrate and, on first start, create the default organization and admin key. Returns the new
    secret (first start only) or None."""
    settings.home.mkdir(parents=True, exist_ok=True)
    db.migrate()
    with db.session() as s:
        if repo.count_organizations(s):
            return None
        org = repo.create_organization(s, name="default")
        _row, secret = repo.create_api_key(s, organization_id=org.id, name="admin", is_admin=True)
        path = settings.admin_key_path
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secret + "\n")
        os.chmod(path, 0o600)
    return secret


def build_context(settings: Settings, db: Database, *, with_engine: bool = True):
    from tenfold.api.deps import ServerContext
    from tenfold.artifacts.storage import ArtifactStore
    from tenfold.billing.meter import Meter

    engine = None
    if with_engine:
        from tenfold.engine import create_engine

        engine = create_engine(settings, settings.base_model)
    return ServerContext(settings=settings, db=db, artifacts=ArtifactStore(settings.artifacts_dir),
                         meter=Meter(settings, db), engine=engine)


def serve(*, host: str | None = None, port: int | None = None, role: str = "all") -> None:
    import uvicorn

    from tenfold.api.app import create_app

    overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    settings = get_settings().model_copy(update=overrides)
    if role not in ("all", "api", "worker"):
        raise SystemExit(f"unknown role '{role}': use all, api or worker")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    db = Database(settings.db_url)
    secret = bootstrap(settings, db)
    out = sys.stdout
    print(f"tenfold home: {settings.home}  database: {settings.db_url.split('@')[-1]}", file=out, flush=True)
    if secret:
        print(f"Created the default organization and an admin API key (shown once, saved to "
              f"{settings.admin_key_path}):\n\n    {secret}\n\nUse it with: tenfold login --api-key {secret} "
              f"--base-url http://{settings.host}:{settings.port}", file=out, flush=True)
    else:
        print(f"Admin API key: in {settings.admin_key_path}", file=out, flush=True)
    if role == "worker":
        from tenfold.jobs.worker import Worker

        ctx = build_context(settings, db, with_engine=False)
        Worker(settings, db, ctx.artifacts).run_forever()
        return
    print(f"Loading base model {settings.base_model} (the first start converts the embedded GGUF once, "
          "about 20 s)…", file=out, flush=True)
    ctx = build_context(settings, db, with_engine=True)
    app = create_app(ctx, run_engine=True, run_worker=role == "all")
    app.state.on_ready = lambda: print(
        f"tenfold is serving {settings.base_model} at http://{settings.host}:{settings.port}/v1 "
        f"(role: {role})", file=out, flush=True)
    # The engine thread runs Python between torch ops; a short GIL switch interval keeps the event loop (HTTP,
    # streaming) responsive while it steps (default 5 ms; each await that needs the GIL could wait that long).
    sys.setswitchinterval(0.0005)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False)
