"""The FastAPI application: wires routes, error handlers and the server context, and runs the engine
and the training worker for the lifetime of the app.

Owns: ``create_app``. Does not own: process start-up, credentials bootstrap or printing (``server.py``).
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI

from tenfold import __version__
from tenfold.api import errors
from tenfold.api.deps import ServerContext
from tenfold.api import (
    routes_adapters,
    routes_admin,
    routes_batches,
    routes_files,
    routes_fine_tuning,
    routes_health,
    routes_inference,
    routes_models,
    routes_usage,
)

log = logging.getLogger("tenfold.api")


def create_app(context: ServerContext, *, run_engine: bool = True, run_worker: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        worker = None
        if run_engine and context.engine is not None:
            await context.engine.start()
        if run_worker:
            from tenfold.jobs.worker import Worker

            worker = Worker(context.settings, context.db, context.artifacts)
            worker.start()
        batch_runner = None
        if run_engine and context.engine is not None:
            from tenfold.batch.runner import BatchRunner

            batch_runner = BatchRunner(context)
            batch_runner.start()
        app.state.ready = True
        on_ready = getattr(app.state, "on_ready", None)
        if on_ready:
            on_ready()
        try:
            yield
        finally:
            app.state.ready = False
            if batch_runner is not None:
                await batch_runner.stop()
            if worker is not None:
                worker.stop()
            if run_engine and context.engine is not None:
                await context.engine.stop()

    app = FastAPI(title="tenfold", version=__version__, lifespan=lifespan,
                  description="Fine-tune LoRA adapters, deploy any checkpoint, serve them OpenAI-compatibly.")
    app.state.ctx = context
    app.state.ready = False
    errors.install(app)
    for module in (routes_health, routes_admin, routes_files, routes_fine_tuning, routes_adapters, routes_inference,
                   routes_models, routes_usage, routes_batches):
        app.include_router(module.router)
    return app
