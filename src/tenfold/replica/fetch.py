"""Adapters for a replica on a machine that does not share the api's disk: fetched by content digest from the
api (``GET /internal/adapters/<digest>`` with the deployment's secret, never an organization's key), checked
against that digest, and cached in the replica's folder so each adapter crosses the network once.

Owns: the download (to a temporary file, size-capped), safe extraction (``artifacts.archive.extract_safely``),
the digest check (a mismatch is refused and leaves nothing cached) and the cache layout
(``<cache>/<digest>``, moved into place whole). Does not own: loading the folder into the engine.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import httpx

from tenfold.artifacts.archive import ArchiveError, extract_safely
from tenfold.engine.types import AdapterError
from tenfold.training.checkpoints import adapter_digest

MAX_BYTES = 4 << 30  # an adapter archive larger than this is refused


def cached(cache_dir: Path, digest: str) -> Path:
    return cache_dir / digest.replace(":", "-")


def fetch_adapter(api_url: str, secret: str, digest: str, cache_dir: Path, *, timeout: float = 300.0) -> Path:
    """The folder of adapter ``digest``: from the cache, else downloaded from the api and verified."""
    dest = cached(cache_dir, digest)
    if dest.is_dir():
        return dest
    cache_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".incoming-", dir=cache_dir))
    try:
        archive = work / "adapter.tar.zst"
        url = f"{api_url.rstrip('/')}/internal/adapters/{digest}"
        try:
            with httpx.stream("GET", url, headers={"Authorization": f"Bearer {secret}"}, timeout=timeout) as r:
                if r.status_code != 200:
                    r.read()
                    raise AdapterError(f"the api did not hand out adapter {digest} ({r.status_code}: "
                                       f"{r.text[:300]})")
                size = 0
                with open(archive, "wb") as out:
                    for chunk in r.iter_bytes(1 << 20):
                        size += len(chunk)
                        if size > MAX_BYTES:
                            raise AdapterError(f"adapter {digest} is larger than {MAX_BYTES >> 30} GiB; refused")
                        out.write(chunk)
        except httpx.HTTPError as e:
            raise AdapterError(f"could not fetch adapter {digest} from the api at {api_url}: {e}") from None
        try:
            with open(archive, "rb") as fh:
                folder = extract_safely(fh, work / "extracted", max_bytes=MAX_BYTES)
            got = adapter_digest(folder)
        except (ArchiveError, FileNotFoundError) as e:
            raise AdapterError(f"adapter {digest} from the api is not a usable adapter folder: {e}") from None
        if got != digest:
            raise AdapterError(f"adapter digest mismatch: asked for {digest}, received {got}; refused")
        folder.rename(dest)
        return dest
    finally:
        shutil.rmtree(work, ignore_errors=True)
