"""``client.models`` (``GET /v1/models``: what the caller may call) and ``client.adapters``
(``/v1/adapters``: deploying adapters and checkpoints for serving).

Owns: models list and retrieve; adapters create (deploy ``<job>`` or ``<job>/step-N`` under the model name
``<job>``, with ``verify``), plan (the dry run), import (a PEFT folder, packed here as a ``.tar.zst`` in a
temporary file and streamed up, an archive, or a Hub id), list, retrieve and delete (undeploy; deletes an
import deployed nowhere). Does not own: where or how an adapter is loaded or validated (the server).
"""

from __future__ import annotations

import tarfile
import tempfile
from pathlib import Path
from typing import IO

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

    def import_(self, source: str | Path | None = None, *, hub_id: str | None = None, revision: str | None = None,
                base_model: str | None = None, name: str | None = None,
                timeout_seconds: float | None = None) -> Adapter:
        """Import a PEFT LoRA adapter trained elsewhere: ``source`` is its folder (``adapter_config.json`` and
        ``adapter_model.safetensors``; packed and streamed up) or a ``.tar`` / ``.tar.zst`` of it; or pass
        ``hub_id`` for the server to fetch from the Hugging Face Hub. The server validates it against
        ``base_model`` (default: the base its config names) and answers an ``adp-…`` adapter with status
        ``imported``; deploy it with ``create(model="adp-…")`` (or its ``name``)."""
        if (source is None) == (hub_id is None):
            raise ValueError("pass exactly one of source (a folder or archive path) or hub_id")
        data = compact({"hub_id": hub_id, "revision": revision, "base_model": base_model, "name": name})
        files = None
        if source is not None:
            path = Path(source).expanduser()
            if path.is_dir():
                files = {"file": (f"{path.name}.tar.zst", pack_folder(path), "application/zstd")}
            elif path.is_file():
                files = {"file": (path.name, open(path, "rb"), "application/octet-stream")}
            else:
                raise FileNotFoundError(f"{path} is neither an adapter folder nor an archive")
        return self._call("POST", "/adapters/import", Adapter, files=files, data=data or None,
                          timeout_seconds=timeout_seconds)

    def list(self, *, timeout_seconds: float | None = None) -> ListResponse[Adapter]:
        """Every adapter your organization has deployed, and imported adapters deployed nowhere (status
        ``imported``); not paginated."""
        return self._call("GET", "/adapters", ListResponse[Adapter], timeout_seconds=timeout_seconds)

    def retrieve(self, model: str, *, timeout_seconds: float | None = None) -> Adapter:
        return self._call("GET", f"/adapters/{segment(model)}", Adapter, timeout_seconds=timeout_seconds)

    def delete(self, model: str, *, timeout_seconds: float | None = None) -> Deleted:
        """Undeploy: stop serving the model name; the job and its checkpoints stay. An imported adapter
        deployed nowhere is deleted (with its files)."""
        return self._call("DELETE", f"/adapters/{segment(model)}", Deleted, timeout_seconds=timeout_seconds)


def pack_folder(folder: Path) -> IO[bytes]:
    """The folder's files as a ``.tar.zst`` in an anonymous temporary file (rewound), links followed."""
    import zstandard

    out = tempfile.TemporaryFile()
    with zstandard.ZstdCompressor(level=3).stream_writer(out, closefd=False) as z, \
            tarfile.open(fileobj=z, mode="w|", format=tarfile.PAX_FORMAT, dereference=True) as tar:
        for item in sorted(folder.iterdir()):
            if item.is_file():
                tar.add(item, arcname=item.name, recursive=False)
    out.seek(0)
    return out


__all__ = ["Models", "Adapters", "pack_folder"]
