"""Reading an offline W&B run as wandb wrote it, for the tests: the run record (project, name, tags, config)
and the history rows of its ``run-<id>.wandb`` file.

That file is a LevelDB-style log (a 7-byte header ``:W&B`` + magic + version, then 32 KiB blocks of records
with a 7-byte header: CRC32, length, type FULL/FIRST/MIDDLE/LAST) whose payloads are wandb's own protobuf
``Record`` messages (``wandb.proto.wandb_internal_pb2``). The installed wandb has no public reader for it,
so this is the few lines of framing, decoded with wandb's own message classes.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BLOCK = 32 * 1024
HEADER = 7


@dataclass
class OfflineRun:
    folder: Path
    project: str = ""
    name: str = ""
    run_id: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None

    def series(self, key: str) -> dict[int, float]:
        """``{step: value}`` of one logged metric."""
        return {int(row["_step"]): row[key] for row in self.history if key in row}


def _records(raw: bytes) -> list[bytes]:
    if raw[:4] != b":W&B":
        raise ValueError("not a .wandb file")
    out, pos, pending = [], HEADER, b""
    while pos + HEADER <= len(raw):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # block trailer padding
            pos += left
            continue
        crc, length, kind = struct.unpack("<IHB", raw[pos:pos + HEADER])
        if kind == 0 and length == 0:  # zero padding to the end of the block
            pos += left
            continue
        data = raw[pos + HEADER:pos + HEADER + length]
        if zlib.crc32(bytes([kind]) + data) & 0xFFFFFFFF != crc:
            raise ValueError(f"bad record checksum at byte {pos}")
        pos += HEADER + length
        if kind == 1:
            out.append(data)
        elif kind == 2:
            pending = data
        elif kind == 3:
            pending += data
        elif kind == 4:
            out.append(pending + data)
    return out


def _items(items: Any) -> dict[str, Any]:
    return {(item.key or "/".join(item.nested_key)): json.loads(item.value_json) for item in items}


def read_offline_run(folder: Path) -> OfflineRun:
    """The run in ``folder`` (an ``offline-run-…`` directory)."""
    from wandb.proto import wandb_internal_pb2 as pb

    (path,) = folder.glob("run-*.wandb")
    run = OfflineRun(folder=folder)
    for data in _records(path.read_bytes()):
        record = pb.Record()
        record.ParseFromString(data)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.project, run.name, run.run_id, run.tags = r.project, r.display_name, r.run_id, list(r.tags)
            run.config.update(_items(r.config.update))
        elif kind == "config":
            run.config.update(_items(record.config.update))
        elif kind == "history":
            run.history.append(_items(record.history.item))
        elif kind == "summary":
            run.summary.update(_items(record.summary.update))
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    return run
