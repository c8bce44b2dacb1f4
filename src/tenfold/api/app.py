"""The FastAPI application: wires routes, error handlers and the server context, and runs what the
composition root hands it (``runtime``: the engine, worker and batch runner) for the app's lifetime.

Owns: ``create_app``. Does not own: process start-up, what runs beside the api, or printing
(``tenfold.server``).
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Protocol

from fastapi import FastAPI

from tenfold.api import (
    contract,
    errors,
    routes_adapters,
    routes_admin,
    routes_batches,
    routes_deployments,
    routes_files,
    routes_fine_tuning,
    routes_health,
    routes_inference,
    routes_internal,
    routes_models,
    routes_usage,
)
from tenfold.context import ServerContext
from tenfold.deployments.profiles import available_profiles
from tenfold.jobs.submit import served_base_models
from tenfold.version import __version__

log = logging.getLogger("tenfold.api")


class Runtime(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def create_app(context: ServerContext, *, runtime: Runtime | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if runtime is not None:
            await runtime.start()
        app.state.ready = True
        on_ready = getattr(app.state, "on_ready", None)
        if on_ready:
            on_ready()
        try:
            yield
        finally:
            app.state.ready = False
            if runtime is not None:
                await runtime.stop()

    app = FastAPI(title="tenfold", version=__version__, lifespan=lifespan,
                  description="Fine-tune LoRA adapters, deploy any checkpoint, serve them OpenAI-compatibly.")
    app.state.ctx = context
    app.state.ready = False
    errors.install(app)
    contract.install(app, base_models=served_base_models(context), hardware_profiles=list(available_profiles()))
    for module in (routes_health, routes_admin, routes_files, routes_fine_tuning, routes_adapters, routes_inference,
                   routes_models, routes_usage, routes_batches, routes_deployments, routes_internal):
        app.include_router(module.router)
    return app
