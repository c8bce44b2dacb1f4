"""``client.deployments``: dedicated deployments (``/v1/deployments``) plus the ``wait`` helper.

Owns: create, retrieve, list, update, delete (``force`` detaches the adapters it serves), undelete, and
``wait`` (poll until a replica is healthy, or the deployment failed), written once blocking and once for
asyncio (``AsyncDeployments``). Call a deployment through ``client.chat.completions.create(model="dep-…")``
or ``model="<job>#dep-…"``; attach adapters with ``client.adapters.create(model=..., deployment="dep-…")``.
Does not own: replicas (the server's controller).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from tenfold.sdk._request import Resource, compact, segment
from tenfold.types.common import ListResponse
from tenfold.types.deployments import Deployment


def _done(d: Deployment) -> bool:
    return d.state == "FAILED" or any(r.healthy for r in d.replicas)


class Deployments(Resource):
    def create(self, *, base_model: str, hardware_profile: str | None = None, min_replicas: int | None = None,
               max_replicas: int | None = None, target_rps: float | None = None,
               target_latency_p95_ms: float | None = None, scale_down_window_s: float | None = None,
               display_name: str | None = None, hf_token: str | None = None, engine: str | None = None,
               timeout_seconds: float | None = None) -> Deployment:
        """A dedicated deployment of ``base_model`` (unset fields take the server's defaults; ``hf_token`` is
        used once to fetch a gated model and never stored; ``engine`` is ``"tenfold"`` or ``"vllm"``)."""
        body = compact({"base_model": base_model, "hardware_profile": hardware_profile, "min_replicas": min_replicas,
                        "max_replicas": max_replicas, "target_rps": target_rps,
                        "target_latency_p95_ms": target_latency_p95_ms, "scale_down_window_s": scale_down_window_s,
                        "display_name": display_name, "hf_token": hf_token, "engine": engine})
        return self._call("POST", "/deployments", Deployment, json=body,
                          timeout_seconds=timeout_seconds if timeout_seconds is not None else 600.0)

    def retrieve(self, deployment_id: str, *, timeout_seconds: float | None = None) -> Deployment:
        return self._call("GET", f"/deployments/{segment(deployment_id)}", Deployment, timeout_seconds=timeout_seconds)

    def list(self, *, limit: int | None = None, after: str | None = None, include_deleted: bool = False,
             timeout_seconds: float | None = None) -> ListResponse[Deployment]:
        return self._call("GET", "/deployments", ListResponse[Deployment],
                          params={"limit": limit, "after": after, "include_deleted": include_deleted or None},
                          timeout_seconds=timeout_seconds)

    def update(self, deployment_id: str, *, min_replicas: int | None = None, max_replicas: int | None = None,
               target_rps: float | None = None, target_latency_p95_ms: float | None = None,
               scale_down_window_s: float | None = None, display_name: str | None = None,
               timeout_seconds: float | None = None) -> Deployment:
        """Change limits and targets (a FAILED deployment is tried again)."""
        body = compact({"min_replicas": min_replicas, "max_replicas": max_replicas, "target_rps": target_rps,
                        "target_latency_p95_ms": target_latency_p95_ms, "scale_down_window_s": scale_down_window_s,
                        "display_name": display_name})
        return self._call("PATCH", f"/deployments/{segment(deployment_id)}", Deployment, json=body,
                          timeout_seconds=timeout_seconds)

    def delete(self, deployment_id: str, *, force: bool = False, timeout_seconds: float | None = None) -> Deployment:
        """Stop its replicas and delete it (undeletable for a grace period); ``force`` detaches its adapters."""
        return self._call("DELETE", f"/deployments/{segment(deployment_id)}", Deployment,
                          params={"force": True if force else None}, timeout_seconds=timeout_seconds)

    def undelete(self, deployment_id: str, *, timeout_seconds: float | None = None) -> Deployment:
        return self._call("POST", f"/deployments/{segment(deployment_id)}/undelete", Deployment,
                          timeout_seconds=timeout_seconds)

    def wait(self, deployment_id: str, *, poll: float = 1.0, timeout: float = 600.0,
             on_update: Callable[[Deployment], None] | None = None,
             timeout_seconds: float | None = None) -> Deployment:
        """Poll until a replica is healthy (or the deployment FAILED) and return it; ``TimeoutError`` after
        ``timeout`` seconds. ``on_update`` gets the deployment after each poll."""
        plain, deadline = self._plain(), time.monotonic() + timeout
        while True:
            d = plain.retrieve(deployment_id, timeout_seconds=timeout_seconds)
            if on_update is not None:
                on_update(d)
            if _done(d):
                return d
            if time.monotonic() >= deadline:
                raise TimeoutError(f"deployment {deployment_id} has no healthy replica after {timeout:g}s ({d.state})")
            time.sleep(poll)


class AsyncDeployments(Deployments):
    """``Deployments`` for ``AsyncTenfold``: the same verbs (awaited); ``wait`` is a coroutine."""

    async def wait(self, deployment_id: str, *, poll: float = 1.0, timeout: float = 600.0,  # type: ignore[override]
                   on_update: Callable[[Deployment], None] | None = None,
                   timeout_seconds: float | None = None) -> Deployment:
        plain, deadline = self._plain(), time.monotonic() + timeout
        while True:
            d = await plain.retrieve(deployment_id, timeout_seconds=timeout_seconds)
            if on_update is not None:
                on_update(d)
            if _done(d):
                return d
            if time.monotonic() >= deadline:
                raise TimeoutError(f"deployment {deployment_id} has no healthy replica after {timeout:g}s ({d.state})")
            await asyncio.sleep(poll)
