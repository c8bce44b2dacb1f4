"""Local artifact storage under ``$TENFOLD_HOME/artifacts``: uploaded files and job outputs.

Owns: where bytes live and writing them atomically (temp file + rename), so a reader never sees a half
file and a failed upload leaves nothing behind. Does not own: which rows point at them (the store).
A remote store (s3://, hf://) would implement the same methods.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        (self.root / "files").mkdir(parents=True, exist_ok=True)
        (self.root / "jobs").mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        p = (self.root / key).resolve()
        if self.root.resolve() not in p.parents:
            raise ValueError(f"artifact key escapes the store: {key!r}")
        return p

    def stage(self, data: bytes) -> Path:
        """Write bytes to a temp file inside the store (same filesystem, so ``commit`` is a rename)."""
        fd, tmp = tempfile.mkstemp(prefix=".upload-", dir=self.root / "files")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return Path(tmp)

    def commit(self, staged: Path, key: str) -> Path:
        dest = self.path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, dest)
        return dest

    def discard(self, staged: Path) -> None:
        staged.unlink(missing_ok=True)

    def read(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def delete(self, key: str) -> None:
        p = self.path(key)
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)

    def job_dir(self, job_id: str) -> Path:
        d = self.path(f"jobs/{job_id}")
        d.mkdir(parents=True, exist_ok=True)
        return d
