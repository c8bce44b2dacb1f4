"""``.tar.zst`` archives, streamed both ways with bounded memory.

Owns: ``stream_tar_zst`` (a folder's files → compressed chunks as they are produced: the tar headers are
written by hand and each file is read in 1 MiB pieces into a zstandard stream, so neither the archive nor
a whole file is ever held in memory or written to disk first) and ``extract_safely`` (a ``.tar`` or
``.tar.zst`` upload → a folder, refusing path traversal, absolute names, links, devices and anything that
decompresses past a size cap, leaving nothing behind on refusal). Does not own: what goes into an archive
(downloads, exports) or what an extracted folder must hold (adapter validation).
"""

from __future__ import annotations

import io
import shutil
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

import zstandard

CHUNK = 1 << 20
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class ArchiveError(ValueError):
    """An archive that cannot be accepted; the message says what was wrong."""


class _Sink(io.RawIOBase):
    """Collects what the compressor writes until the generator hands it out."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.parts.append(bytes(b))
        return len(b)

    def take(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


def stream_tar_zst(files: Iterable[tuple[str, Path | bytes]], *, level: int = 3, root: str = "") -> Iterator[bytes]:
    """Compressed chunks of a tar of ``files`` (``(name in the archive, path on disk or the bytes themselves)``:
    small generated files such as a rewritten config travel as bytes), under ``root/``."""
    sink = _Sink()
    z = zstandard.ZstdCompressor(level=level).stream_writer(sink, write_return_read=False, closefd=False)
    now = int(time.time())
    for name, source in files:
        arcname = f"{root}/{name}" if root else name
        size = len(source) if isinstance(source, bytes) else source.stat().st_size
        info = tarfile.TarInfo(arcname)
        info.size, info.mtime, info.mode = size, now, 0o644
        z.write(info.tobuf(format=tarfile.PAX_FORMAT))
        with (io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")) as fh:
            for piece in iter(lambda: fh.read(CHUNK), b""):
                z.write(piece)
                if sink.parts:
                    yield sink.take()
        if size % tarfile.BLOCKSIZE:
            z.write(b"\0" * (tarfile.BLOCKSIZE - size % tarfile.BLOCKSIZE))
    z.write(b"\0" * (2 * tarfile.BLOCKSIZE))
    z.flush(zstandard.FLUSH_FRAME)
    tail = sink.take()
    if tail:
        yield tail


def _member_path(member: tarfile.TarInfo) -> PurePosixPath:
    name = PurePosixPath(member.name)
    if member.name.startswith(("/", "\\")) or name.is_absolute() or ".." in name.parts or "\\" in member.name:
        raise ArchiveError(f"the archive member {member.name!r} points outside the archive; nothing was stored")
    if member.issym() or member.islnk():
        raise ArchiveError(f"the archive member {member.name!r} is a link; archives may hold plain files and "
                           "folders only; nothing was stored")
    if not (member.isfile() or member.isdir()):
        raise ArchiveError(f"the archive member {member.name!r} is a device or special file; nothing was stored")
    return name


def extract_safely(data: io.BufferedIOBase, dest: Path, *, max_bytes: int) -> Path:
    """Extract a ``.tar`` or ``.tar.zst`` stream into ``dest`` (created; removed again on refusal) and return
    the folder holding its files (the single top folder when there is one)."""
    head = data.read(4)
    stream: io.BufferedIOBase = _Rejoined(head, data)
    if head == ZSTD_MAGIC:
        stream = zstandard.ZstdDecompressor().stream_reader(stream)
    dest.mkdir(parents=True, exist_ok=False)
    try:
        total = 0
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                rel = _member_path(member)
                target = dest.joinpath(*rel.parts)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                total += member.size
                if total > max_bytes:
                    raise ArchiveError(f"the archive unpacks to more than {max_bytes} bytes (the upload limit); "
                                       "nothing was stored")
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                with open(target, "wb") as out:
                    shutil.copyfileobj(source, out, CHUNK)
    except (tarfile.TarError, zstandard.ZstdError, EOFError) as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise ArchiveError(f"not a readable .tar or .tar.zst archive ({exc}); nothing was stored") from None
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    entries = [p for p in dest.iterdir()]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else dest


class _Rejoined(io.RawIOBase):
    """``head`` followed by the rest of ``stream`` (the magic bytes were read to pick a decoder)."""

    def __init__(self, head: bytes, stream: io.BufferedIOBase) -> None:
        self.head, self.stream = head, stream

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self.head:
            n = min(len(b), len(self.head))
            b[:n], self.head = self.head[:n], self.head[n:]
            return n
        chunk = self.stream.read(len(b))
        b[: len(chunk)] = chunk
        return len(chunk)


def scratch_dir(root: Path) -> Path:
    """A fresh temporary folder under ``root`` (same file system as the store, so moving it in is a rename)."""
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=root))
