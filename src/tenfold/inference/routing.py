"""Which engine serves a route, and which prompt builder renders for it.

Owns: the one decision "this resolved model runs on that engine": a route that names a dedicated
deployment goes to one of its replicas (chosen by the deployment's router, ``tenfold.deployments.pool``;
``session_key`` keeps a conversation on one replica so its prefix cache is reused), every other route to
the process's shared engine; and the prompt builder of the route's base model. Does not own: resolving the
``model`` field into a route (``tenfold.deployments.router``) or generation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tenfold.errors import Unavailable

if TYPE_CHECKING:
    from tenfold.context import ServerContext
    from tenfold.deployments.router import Route
    from tenfold.engine.types import Engine
    from tenfold.inference.prompts import Prompter


async def engine_for(c: ServerContext, route: Route, *, session_key: str | None = None) -> Engine:
    """The engine that runs ``route``; ``Unavailable`` when none can now (a deployment waking up or without a
    healthy replica, or a process that serves no engine)."""
    if route.deployment_id is not None:
        if c.deployments is None:
            raise Unavailable("This server process does not serve dedicated deployments.", code="no_engine")
        return await c.deployments.engine_for(route.deployment_id, adapter=route.adapter, session_key=session_key)
    if c.engine is None:
        raise Unavailable("This server process runs no engine (it was started with --role worker).",
                          code="no_engine", retry_after=None)
    return c.engine


def prompter_for(c: ServerContext, route: Route, *, load: bool = True) -> Prompter | None:
    """The chat template and tokenizer of ``route``'s base model, loaded once per base model (blocking, so
    the first call for a base model other than the server's belongs off the event loop; ``load=False``
    answers None instead of loading)."""
    if route.base_model == c.settings.base_model and c.prompter is not None:
        return c.prompter
    prompter = c.prompters.get(route.base_model)
    if prompter is None and load:
        from tenfold.inference.prompts import Prompter
        from tenfold.models.registry import resolve_base_model

        path = resolve_base_model(route.base_model, models_dir=c.settings.models_dir)
        prompter = c.prompters[route.base_model] = Prompter(path)
    return prompter
