"""``client.adapters``: deploying adapters and checkpoints for serving (``/v1/adapters``).

Owns: deploy (``<job>`` or ``<job>/step-N``, with ``dry_run`` and ``verify``), list, get, undeploy.
Does not own: where or how the adapter is loaded (the server's engine).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from tenfold.sdk.client import Tenfold


class Adapters:
    def __init__(self, client: Tenfold) -> None:
        self._client = client

    def deploy(self, model: str, dry_run: bool = False, verify: bool = True) -> dict[str, Any]:
        """Serve ``<job>`` (final adapter) or ``<job>/step-N`` under the model name ``<job>``.

        Returns the adapter object (``status`` ``deployed`` or ``dry_run``, ``endpoint``, ``replaced``…).
        A job without a final adapter raises ``ConflictError`` whose message lists the saved steps.
        """
        return self._client.request(
            "POST", "/adapters", json={"model": model, "dry_run": dry_run, "verify": verify}
        )

    def list(self, limit: int = 100, after: str | None = None) -> dict[str, Any]:
        return self._client.request("GET", "/adapters", params={"limit": limit, "after": after})

    def get(self, model: str) -> dict[str, Any]:
        return self._client.request("GET", f"/adapters/{quote(model, safe='')}")

    def undeploy(self, model: str) -> dict[str, Any]:
        """``{"id", "object": "adapter", "deleted": true}``."""
        return self._client.request("DELETE", f"/adapters/{quote(model, safe='')}")
