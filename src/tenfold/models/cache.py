"""Crash-safe, process-safe creation of folders in the model cache.

Owns: the "build into a temp folder, then rename" pattern and the fcntl lock that keeps two processes
from building the same folder at once. Does not own: what goes into the folders (``gguf``, ``tiny``,
``registry``).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock on ``path`` (created if missing), held for the ``with`` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def build_once(target: Path, builder: Callable[[Path], None], *, marker: str = "config.json") -> Path:
    """Return ``target``, building it with ``builder(tmp_dir)`` first if it is not complete yet.

    ``builder`` writes into an empty temporary folder next to ``target``; the folder is renamed into
    place only when ``builder`` returns, so a crash never leaves a half-written ``target``. A lock file
    serialises concurrent builders; the second one finds the finished folder and returns at once.
    """
    if (target / marker).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(target.parent / f".{target.name}.lock"):
        if (target / marker).exists():
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            builder(tmp)
            if not (tmp / marker).exists():
                raise RuntimeError(f"building {target} did not produce {marker}")
            if target.exists():  # a leftover without the marker (older crash): replace it
                shutil.rmtree(target)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target
