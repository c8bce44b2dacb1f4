"""Data-parallel training on several processes through accelerate:
``torchrun --nproc_per_node N -m tenfold.training.ddp --spec spec.json`` (or ``accelerate launch``).

Owns: the per-process wiring. accelerate's ``PartialState`` reads the launcher's environment (RANK,
WORLD_SIZE, MASTER_ADDR…) and sets up the process group (gloo on CPU, nccl on GPUs). Every process builds
the same model from the same seed and walks the same global batch order; each computes the loss on its
slice of every step's examples (``indices[rank::world]``), gradients are averaged across processes
(``accelerate.utils.reduce``, the all-reduce DDP performs) before clipping, so every process takes the same
optimizer step and the weights stay identical. Only the main process emits the event stream and writes
checkpoints and the final adapter. At the end every process prints a ``rank_done`` event with a checksum of
its LoRA weights so agreement can be checked.
Both recipes run this way: SFT shards a step's examples, DPO its preference pairs (every process computes
the reference log-probs of all pairs once, so none needs another's).
Does not own: the recipes (picked by ``tenfold.training.main.run_training``) or the loop
(``tenfold.training.runner``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any


def _checksum(model: Any) -> str:
    h = hashlib.sha256()
    for name, p in sorted((n, p) for n, p in model.named_parameters() if p.requires_grad):
        h.update(name.encode())
        h.update(p.detach().cpu().float().numpy().tobytes())
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tenfold.training.ddp")
    parser.add_argument("--spec", required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from accelerate import PartialState
    from accelerate.utils import reduce

    from tenfold.training.main import run_training
    from tenfold.training.spec import TrainingSpec

    state = PartialState(cpu=not _has_cuda())
    spec = TrainingSpec.model_validate_json(Path(args.spec).read_text())
    out = sys.stdout

    def emit(event: dict[str, Any]) -> None:
        out.write(json.dumps({**event, "rank": state.process_index}, default=str) + "\n")
        out.flush()

    holder: dict[str, Any] = {}

    def average_gradients(model: Any) -> None:
        holder["model"] = model
        for p in model.parameters():
            if p.requires_grad and p.grad is not None:
                p.grad.copy_(reduce(p.grad, reduction="mean"))

    done = run_training(spec, emit, is_main=state.is_main_process, reduce=average_gradients,
                        shard=(state.process_index, state.num_processes))
    state.wait_for_everyone()
    model = holder.get("model")
    emit({"type": "rank_done", "world_size": state.num_processes, "train_loss": done["train_loss"],
          "checksum": _checksum(model) if model is not None else None, "backend": state.backend})
    state.destroy_process_group() if hasattr(state, "destroy_process_group") else None
    return 0


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    raise SystemExit(main())
