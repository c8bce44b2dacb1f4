"""``client.files``: the Files resource (``/v1/files``).

Owns: uploading (multipart ``file`` + ``purpose``), listing, getting, deleting and downloading files.
Does not own: validating JSONL (the server does it and answers 400 naming the line).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from tenfold.sdk.client import Tenfold


class Files:
    def __init__(self, client: Tenfold) -> None:
        self._client = client

    def upload(
        self, file: str | Path | bytes, purpose: str = "fine-tune", filename: str | None = None
    ) -> dict[str, Any]:
        """Upload a path or raw bytes; returns the file object (``{"id": "file-…", "bytes", …}``)."""
        if isinstance(file, (bytes, bytearray)):
            content = bytes(file)
            name = filename or "upload.jsonl"
        else:
            path = Path(file).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"no such file: {path}")
            content = path.read_bytes()
            name = filename or path.name
        return self._client.request(
            "POST",
            "/files",
            files={"file": (name, content, "application/jsonl")},
            data={"purpose": purpose},
        )

    def list(self, limit: int = 20, after: str | None = None, purpose: str | None = None) -> dict[str, Any]:
        """The list envelope ``{"object": "list", "data": [...], "has_more", …}``, newest first."""
        return self._client.request("GET", "/files", params={"limit": limit, "after": after, "purpose": purpose})

    def get(self, file_id: str) -> dict[str, Any]:
        return self._client.request("GET", f"/files/{quote(file_id, safe='')}")

    def delete(self, file_id: str) -> dict[str, Any]:
        """``{"id", "object": "file", "deleted": true}``."""
        return self._client.request("DELETE", f"/files/{quote(file_id, safe='')}")

    def content(self, file_id: str) -> bytes:
        """The file's raw bytes."""
        return self._client.send("GET", f"/files/{quote(file_id, safe='')}/content").content
