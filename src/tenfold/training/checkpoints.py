"""Checkpoint folders on disk: the deployable PEFT adapter plus, separately, the state needed to resume.

Layout of ``<output_dir>/step-<N>/`` (and ``<output_dir>/final/``)::

    adapter_config.json          serving file (base_model_name_or_path = the base model *name*)
    adapter_model.safetensors    serving file
    resume/state.pt              optimizer, scheduler, RNG states, step, tokens (checkpoints only)
    resume/trainer_state.json    the same counters, human-readable

Folders are written under a temporary name in the same directory and renamed into place, so a folder
that exists is always complete. Owns: that layout, ``adapter_digest`` (the content identity the engine
uses in prefix-cache keys) and reading resume state. Does not own: what goes into the resume state
(``tenfold.training.sft``) or how checkpoints are recorded in the store (the worker).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SERVING_FILES = ("adapter_config.json", "adapter_model.safetensors")
RESUME_DIR = "resume"
_STEP_RE = re.compile(r"^step-(\d+)$")


@dataclass(frozen=True)
class CheckpointInfo:
    step: int
    path: Path
    has_resume_state: bool


def save_adapter(peft_model: Any, folder: str | Path, base_model_name: str,
                 extra: Callable[[Path], None] | None = None) -> Path:
    """Save the trainable adapter of ``peft_model`` into ``folder`` atomically; return the folder.

    ``extra(tmp_folder)`` may write more files (the resume state) before the folder is renamed into place.
    """
    folder = Path(folder).resolve()
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".tmp-{folder.name}-{uuid.uuid4().hex[:8]}"
    try:
        peft_model.save_pretrained(str(tmp), safe_serialization=True)
        _set_base_model_name(tmp / "adapter_config.json", base_model_name)
        readme = tmp / "README.md"
        if readme.exists():
            readme.unlink()
        if extra is not None:
            extra(tmp)
        _fsync_tree(tmp)
        if folder.exists():
            trash = folder.parent / f".old-{folder.name}-{uuid.uuid4().hex[:8]}"
            os.rename(folder, trash)
            os.rename(tmp, folder)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _set_base_model_name(config_path: Path, name: str) -> None:
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = name
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())


def adapter_digest(folder: str | Path) -> str:
    """sha256 over the sorted serving file names and contents; identical adapters give identical digests."""
    folder = Path(folder)
    h = hashlib.sha256()
    for name in sorted(SERVING_FILES):
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: {folder} is not a complete adapter folder")
        h.update(name.encode() + b"\0")
        h.update(str(path.stat().st_size).encode() + b"\0")
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return "sha256:" + h.hexdigest()


def list_checkpoints(output_dir: str | Path) -> list[CheckpointInfo]:
    """Complete ``step-<N>`` folders under ``output_dir``, by step (temporary folders are ignored)."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found: list[CheckpointInfo] = []
    for child in root.iterdir():
        match = _STEP_RE.match(child.name)
        if match and child.is_dir() and all((child / f).is_file() for f in SERVING_FILES):
            found.append(CheckpointInfo(step=int(match.group(1)), path=child.resolve(),
                                        has_resume_state=(child / RESUME_DIR / "state.pt").is_file()))
    return sorted(found, key=lambda c: c.step)


def write_resume_state(folder: Path, state: dict[str, Any], summary: dict[str, Any]) -> None:
    import torch

    target = folder / RESUME_DIR
    target.mkdir(parents=True, exist_ok=True)
    torch.save(state, target / "state.pt")
    (target / "trainer_state.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")


def read_resume_state(checkpoint: str | Path) -> dict[str, Any]:
    """The resume state saved with a checkpoint; raises ``FileNotFoundError`` naming what is missing."""
    import torch

    path = Path(checkpoint) / RESUME_DIR / "state.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{checkpoint} has no resume state ({RESUME_DIR}/state.pt); "
                                "only step-<N> checkpoints saved during training can be resumed")
    return torch.load(path, map_location="cpu", weights_only=False)
