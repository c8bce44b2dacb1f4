"""``client.models`` (``GET /v1/models``: what the caller may call) and ``client.adapters``
(``/v1/adapters``: deploying adapters and checkpoints for serving).

Owns: models list and retrieve; adapters create (deploy ``<job>`` or ``<job>/step-N`` under the model name
``<job>``, with ``verify``), plan (the dry run), list, retrieve and delete (undeploy). Does not own: where or how
an adapter is loaded (the server's engine).
"""

from __future__ import annotations

from tenfold.sdk._request import Resource, compact, segment
from tenfold.types.adapters import Adapter, AdapterDeployPlan
from tenfold.types.common import Deleted, ListResponse
from tenfold.types.models import Model


class Models(Resource):
    def list(self, *, timeout_seconds: float | None = None) -> ListResponse[Model]:
        """Everything the caller may call: base models (``parent`` None) and deployed adapters."""
        return self._call("GET", "/models", ListResponse[Model], timeout_seconds=timeout_seconds)

    def retrieve(self, model: str, *, timeout_seconds: float | None = None) -> Model:
        return self._call("GET", f"/models/{segment(model)}", Model, timeout_seconds=timeout_seconds)


class Adapters(Resource):
    def create(self, *, model: str, verify: bool = True, deployment: str | None = None,
               timeout_seconds: float | None = None) -> Adapter:
        """Serve ``<job>`` (its final adapter) or ``<job>/step-N`` as the model ``<job>``, replacing what
        that name served; with ``deployment="dep-…"`` on that dedicated deployment, as ``<job>#dep-…``.
        ``verify`` runs a smoke generation after loading. A job without a final adapter raises
        ``ConflictError`` listing its saved steps."""
        body = compact({"model": model, "verify": verify, "deployment": deployment})
        return self._call("POST", "/adapters", Adapter, json=body, timeout_seconds=timeout_seconds)

    def plan(self, *, model: str, verify: bool = True, deployment: str | None = None,
             timeout_seconds: float | None = None) -> AdapterDeployPlan:
        """What ``create`` would do (the dry run): which checkpoint would serve and what it would replace;
        changes nothing."""
        body = compact({"model": model, "verify": verify, "deployment": deployment})
        return self._call("POST", "/adapters/plans", AdapterDeployPlan, json=body, timeout_seconds=timeout_seconds)

    def list(self, *, timeout_seconds: float | None = None) -> ListResponse[Adapter]:
        """Every adapter your organization has deployed (not paginated)."""
        return self._call("GET", "/adapters", ListResponse[Adapter], timeout_seconds=timeout_seconds)

    def retrieve(self, model: str, *, timeout_seconds: float | None = None) -> Adapter:
        return self._call("GET", f"/adapters/{segment(model)}", Adapter, timeout_seconds=timeout_seconds)

    def delete(self, model: str, *, timeout_seconds: float | None = None) -> Deleted:
        """Undeploy: stop serving the model name; the job and its checkpoints stay."""
        return self._call("DELETE", f"/adapters/{segment(model)}", Deleted, timeout_seconds=timeout_seconds)


__all__ = ["Models", "Adapters"]
