"""A job's weights, out: which folder a download means and the files it streams.

Owns: choosing the step (``checkpoint_step``, default the final adapter, else the newest checkpoint; a step
that does not exist is a 404 listing the saved ones), the type (``adapter``: the PEFT folder, two files, its
config naming the base by its Hugging Face Hub name where it has one;
``merged``: a full model, built once per step by ``tenfold.training.merge`` in a subprocess and kept beside
the job's checkpoints; ``default`` means ``adapter`` for these LoRA jobs), and the archive's name. The
bytes are streamed by ``tenfold.artifacts.archive``. Does not own: HTTP or the archive format.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tenfold.context import Principal, ServerContext
from tenfold.errors import Conflict, InvalidRequest, NotFound, not_found
from tenfold.jobs import refs
from tenfold.store import repo
from tenfold.training.checkpoints import SERVING_FILES
from tenfold.types.models import HUB_BASE_MODELS

CheckpointType = Literal["default", "merged", "adapter"]
_MERGE_LOCKS: dict[str, threading.Lock] = {}
_GUARD = threading.Lock()


@dataclass(frozen=True)
class Download:
    name: str  # the archive's top folder and file name (without .tar.zst)
    files: list[tuple[str, Path | bytes]]  # (name in the archive, path on disk or the bytes)


def _lock(key: str) -> threading.Lock:
    with _GUARD:
        return _MERGE_LOCKS.setdefault(key, threading.Lock())


def _merged(c: ServerContext, job_id: str, base_model: str, step: int | None, adapter: Path) -> Path:
    from tenfold.models.registry import resolve_base_model

    try:
        base = resolve_base_model(base_model, models_dir=c.settings.models_dir)
    except ValueError as e:
        raise InvalidRequest(f"A merged download needs the base model '{base_model}', which cannot be loaded on this "
                             f"server: {e}. Download checkpoint_type=adapter instead and merge where the base model "
                             "is.", param="checkpoint_type", code="base_model_unavailable") from None
    out = c.artifacts.path(f"jobs/{job_id}/merged/{'final' if step is None else f'step-{step}'}")
    with _lock(str(out)):
        if not out.is_dir():
            out.parent.mkdir(parents=True, exist_ok=True)
            done = subprocess.run([sys.executable, "-m", "tenfold.training.merge", "--base", str(base), "--adapter",
                                   str(adapter), "--out", str(out)], capture_output=True, text=True, timeout=3600)
            if done.returncode != 0:
                raise InvalidRequest(f"Merging the adapter into '{base_model}' failed: {done.stderr[-800:]}",
                                     param="checkpoint_type", code="merge_failed")
    return out


def _portable_config(folder: Path, base_model: str) -> bytes:
    """``adapter_config.json`` with ``base_model_name_or_path`` set to the base's Hugging Face Hub name where it
    has one, so ``AutoPeftModelForCausalLM.from_pretrained(folder)`` loads it anywhere (and an import here
    still recognises the base)."""
    config = json.loads((folder / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = HUB_BASE_MODELS.get(base_model, base_model)
    return (json.dumps(config, indent=2, sort_keys=True) + "\n").encode()


def download(c: ServerContext, p: Principal, job_id: str, *, checkpoint_step: int | None,
             checkpoint_type: CheckpointType) -> Download:
    """What ``GET /v1/fine_tuning/jobs/{id}/content`` streams (merging first when asked for ``merged``)."""
    with c.db.session() as s:
        job = repo.get_job(s, job_id=job_id, organization_id=p.organization_id)
        if job is None:
            raise not_found("fine-tuning job", job_id, hint="List your jobs with GET /v1/fine_tuning/jobs.")
        steps = refs.saved_steps(s, job_id=job_id)
        step, folder = checkpoint_step, None
        if step is None and job.final_adapter_path:
            folder = Path(job.final_adapter_path)
        elif step is None and steps:
            step = steps[-1]
        elif step is None:
            raise Conflict(f"Job {job_id} has no weights yet (status {job.status}): no final adapter and no saved "
                           "checkpoint.", code="no_weights")
        if folder is None:
            ck = repo.get_checkpoint(s, job_id=job_id, step=step)
            if ck is None:
                raise NotFound(f"Job {job_id} has no checkpoint at step {step}. Saved steps: "
                               f"{', '.join(map(str, steps)) or 'none'}.", param="checkpoint_step",
                               code="checkpoint_not_found")
            folder = Path(ck.path)
        base_model = job.model
    kind = "adapter" if checkpoint_type == "default" else checkpoint_type
    name = f"{job_id}{'' if step is None else f'-step-{step}'}-{kind}"
    if kind == "adapter":
        return Download(name, [(f, _portable_config(folder, base_model) if f == "adapter_config.json" else folder / f)
                               for f in SERVING_FILES])
    merged = _merged(c, job_id, base_model, step, folder)
    return Download(name, [(f.relative_to(merged).as_posix(), f) for f in sorted(merged.rglob("*")) if f.is_file()])
