"""``tenfold serve``: the composition root. Bootstraps the home folder and database (migrations, the first
start's organization and admin key), builds the server context, wires the api to the services it runs for
the app's lifetime (the engine, the training worker, the batch runner, the deployment controller) and runs
uvicorn; with ``--role engine`` it runs a replica of a dedicated deployment instead (no database).

Owns: process start-up and what it prints (where it listens and, on first start only, the admin key, also
saved to ``$TENFOLD_HOME/admin_key`` with mode 0600), and ``Runtime``: what starts and stops with the app.
The one module below the CLI that may import ``tenfold.api`` (to build the app and hand the batch runner
the api's error rendering).
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field

from tenfold.accounts import bootstrap_admin
from tenfold.config import Settings, get_settings
from tenfold.context import ServerContext
from tenfold.store.db import Database


def bootstrap(settings: Settings, db: Database) -> str | None:
    """Migrate and, on first start, create the default organization and admin key. Returns the new
    secret (first start only) or None."""
    settings.home.mkdir(parents=True, exist_ok=True)
    db.migrate()
    return bootstrap_admin(db, admin_key_path=settings.admin_key_path)


def build_context(settings: Settings, db: Database, *, with_engine: bool = True) -> ServerContext:
    """The context; with an engine (not started yet) for the base model and its api-side prompt builder.
    Resolving the model may convert the embedded GGUF on first use (about 20 s)."""
    from tenfold.artifacts.storage import ArtifactStore
    from tenfold.billing.meter import Meter
    from tenfold.deployments.pool import DeploymentRuntime

    engine = prompter = None
    if with_engine:
        from tenfold.engine import create_engine
        from tenfold.inference.prompts import Prompter
        from tenfold.models.registry import resolve_base_model

        engine = create_engine(settings, settings.base_model)
        prompter = Prompter(resolve_base_model(settings.base_model, models_dir=settings.models_dir))
    return ServerContext(settings=settings, db=db, artifacts=ArtifactStore(settings.artifacts_dir),
                         meter=Meter(settings, db), engine=engine, prompter=prompter,
                         deployments=DeploymentRuntime(wait_seconds=settings.deployment_unavailable_wait_seconds))


@dataclass
class Runtime:
    """What runs beside the api for the app's lifetime: the engine, a training worker, the batch runner and
    the deployment controller (which acts while this process holds the controller lease)."""

    context: ServerContext
    run_engine: bool = True
    run_worker: bool = True
    _worker: object = field(default=None, init=False)
    _batches: object = field(default=None, init=False)
    _controller: object = field(default=None, init=False)

    async def start(self) -> None:
        c = self.context
        if self.run_engine and c.engine is not None:
            await c.engine.start()
            chosen = getattr(c.engine, "number_format", None)
            if chosen is not None:
                print(f"engine: {c.settings.base_model}, number format {chosen.reason}", flush=True)
        if self.run_worker:
            from tenfold.jobs.worker import Worker

            self._worker = Worker(c.settings, c.db, c.artifacts)
            self._worker.start()
        if self.run_engine and c.engine is not None:
            from tenfold.api.errors import render
            from tenfold.batch.runner import BatchRunner

            self._batches = BatchRunner(c, render_error=render)
            self._batches.start()
        if c.deployments is not None:
            from tenfold.deployments.controller import Controller

            self._controller = Controller(c.settings, c.db, c.deployments, replica_backend(c))
            self._controller.start()

    async def stop(self) -> None:
        if self._controller is not None:
            await self._controller.stop()
        if self._batches is not None:
            await self._batches.stop()
        if self._worker is not None:
            self._worker.stop()
        if self.run_engine and self.context.engine is not None:
            await self.context.engine.stop()


def replica_backend(c: ServerContext) -> object:
    """Local processes, or Ray actors when ``TENFOLD_CLUSTER`` names a cluster (joined in the background: a
    create checks it first, so a cluster that does not answer is a clear error and creates nothing)."""
    from tenfold.deployments.replicas import LocalProcessBackend

    if not c.settings.cluster:
        return LocalProcessBackend(c.settings)
    from tenfold.deployments.ray_backend import RayBackend

    backend = RayBackend(c.settings, c.settings.cluster)
    c.deployments.check_backend = backend.check
    return backend


def serve(*, host: str | None = None, port: int | None = None, role: str = "all") -> None:
    import uvicorn

    from tenfold.api.app import create_app

    overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    settings = get_settings().model_copy(update=overrides)
    if role not in ("all", "api", "worker", "engine"):
        raise SystemExit(f"unknown role '{role}': use all, api, worker or engine")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if role == "engine":
        serve_replica(settings)
        return
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
    app = create_app(ctx, runtime=Runtime(ctx, run_engine=True, run_worker=role == "all"))
    app.state.on_ready = lambda: print(
        f"tenfold is serving {settings.base_model} at http://{settings.host}:{settings.port}/v1 "
        f"(role: {role})", file=out, flush=True)
    # The engine thread runs Python between torch ops; a short GIL switch interval keeps the event loop (HTTP,
    # streaming) responsive while it steps (default 5 ms; each await that needs the GIL could wait that long).
    sys.setswitchinterval(0.0005)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False)


def serve_replica(settings: Settings) -> None:
    """A replica of a dedicated deployment: the engine of ``TENFOLD_BASE_MODEL`` behind the replica protocol,
    accepting only requests that carry ``TENFOLD_REPLICA_SECRET``. It touches no database."""
    import uvicorn

    from tenfold.engine import create_engine
    from tenfold.replica.app import create_replica_app

    secret = os.environ.get("TENFOLD_REPLICA_SECRET", "")
    if len(secret) < 16:
        raise SystemExit("--role engine needs TENFOLD_REPLICA_SECRET (the deployment's secret; the controller sets it)")
    replica_id = os.environ.get("TENFOLD_REPLICA_ID", "replica")
    orphan = float(os.environ.get("TENFOLD_REPLICA_ORPHAN_SECONDS", "600"))
    engine = create_engine(settings, settings.base_model)
    api_url = os.environ.get("TENFOLD_API_URL", "")
    cache = settings.replica_cache_dir / "adapters"
    app = create_replica_app(engine, secret=secret, replica_id=replica_id, orphan_seconds=orphan, api_url=api_url,
                             cache_dir=cache)
    print(f"tenfold replica {replica_id} of {settings.base_model} at http://{settings.host}:{settings.port}",
          flush=True)
    sys.setswitchinterval(0.0005)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False)
