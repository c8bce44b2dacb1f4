"""Which engine serves a route, and which prompt builder renders for it.

Owns: the one decision "this resolved model runs on that engine". Today every route runs on the
process's shared engine of the server's base model; dedicated deployments extend this function (a route
that names a deployment goes to that deployment's replicas). Does not own: resolving the ``model`` field
into a route (``tenfold.deployments.router``) or generation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tenfold.errors import Unavailable

if TYPE_CHECKING:
    from tenfold.context import ServerContext
    from tenfold.deployments.router import Route
    from tenfold.engine.types import Engine
    from tenfold.inference.prompts import Prompter


def engine_for(c: ServerContext, route: Route) -> Engine:
    """The engine that runs ``route``; ``Unavailable`` when this process serves no engine."""
    if c.engine is None:
        raise Unavailable("This server process runs no engine (it was started with --role worker).",
                          code="no_engine", retry_after=None)
    return c.engine


def prompter_for(c: ServerContext, route: Route) -> Prompter:
    """The chat template and tokenizer of ``route``'s base model."""
    if c.prompter is None:
        raise Unavailable("This server process has no tokenizer for its base model (no engine was started).",
                          code="no_engine", retry_after=None)
    return c.prompter
