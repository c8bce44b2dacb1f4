"""``client.files``: the Files resource (``/v1/files``).

Owns: uploading (multipart ``file`` + ``purpose``) from a path, bytes, a ``(filename, bytes)`` pair or an
open binary file; retrieving, listing, deleting and downloading files. Does not own: validating JSONL
(the server does it and answers 400 naming the line).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Union

from tenfold.sdk._request import Resource, segment
from tenfold.types.common import Deleted, ListResponse
from tenfold.types.files import FileObject

FileInput = Union[str, os.PathLike, bytes, tuple[str, bytes], IO[bytes]]


def read_file_input(file: FileInput) -> tuple[str, bytes]:
    """``(filename, content)`` for what ``files.create`` accepts."""
    if isinstance(file, (bytes, bytearray)):
        return "upload.jsonl", bytes(file)
    if isinstance(file, tuple):
        name, content = file
        return str(name), content.read() if hasattr(content, "read") else bytes(content)
    if hasattr(file, "read"):
        name = getattr(file, "name", None)
        return (Path(name).name if isinstance(name, str) else "upload.jsonl"), file.read()
    path = Path(file).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    return path.name, path.read_bytes()


class Files(Resource):
    def create(self, *, file: FileInput, purpose: str, timeout_seconds: float | None = None) -> FileObject:
        """Upload a JSONL file with purpose ``fine-tune`` or ``batch``; the server validates every line and
        counts a training file's examples and tokens before storing anything."""
        name, content = read_file_input(file)
        return self._call("POST", "/files", FileObject, files={"file": (name, content, "application/jsonl")},
                          data={"purpose": purpose}, timeout_seconds=timeout_seconds)

    def retrieve(self, file_id: str, *, timeout_seconds: float | None = None) -> FileObject:
        return self._call("GET", f"/files/{segment(file_id)}", FileObject, timeout_seconds=timeout_seconds)

    def list(self, *, limit: int | None = None, after: str | None = None, purpose: str | None = None,
             timeout_seconds: float | None = None) -> ListResponse[FileObject]:
        """One page of your files, newest first (``limit`` 1–100, default 20; ``after`` a file id)."""
        return self._call("GET", "/files", ListResponse[FileObject], timeout_seconds=timeout_seconds,
                          params={"limit": limit, "after": after, "purpose": purpose})

    def delete(self, file_id: str, *, timeout_seconds: float | None = None) -> Deleted:
        return self._call("DELETE", f"/files/{segment(file_id)}", Deleted, timeout_seconds=timeout_seconds)

    def content(self, file_id: str, *, timeout_seconds: float | None = None) -> bytes:
        """The file's bytes (e.g. a batch's output file)."""
        return self._call("GET", f"/files/{segment(file_id)}/content", bytes, timeout_seconds=timeout_seconds)


__all__ = ["Files", "FileInput", "read_file_input"]
