"""Data-parallel training on several processes through accelerate:
``torchrun --nproc_per_node N -m tenfold.training.ddp --spec spec.json`` (or ``accelerate launch``).

Owns: the per-process wiring. accelerate's ``PartialState`` reads the launcher's environment (RANK,
WORLD_SIZE, MASTER_ADDR…) and sets up the process group (gloo on CPU, nccl on GPUs). Every process builds
the same model from the same seed and walks the same global batch order; each computes the loss on its
slice of every step's examples (``indices[rank::world]``), gradients are averaged across processes
(``accelerate.utils.reduce``, the all-reduce DDP performs) before clipping, so every process takes the same
optimizer step and the weights stay identical. Only the main process emits the event stream and writes
checkpoints and the final adapter; a rank's own failure is reported by it. The process protocol (events on
stdout, SIGTERM, exit codes) is ``tenfold.training.main``'s; a stop is agreed across ranks (an all-reduce of
the flag before each step) so every rank leaves at the same step. At the end every process prints a
``rank_done`` event with a checksum of its LoRA weights so agreement can be checked. The worker launches
this when a job's ``n_procs`` is above 1.
Both recipes run this way: SFT shards a step's examples, DPO its preference pairs (every process computes
the reference log-probs of all pairs once, so none needs another's).
Does not own: the recipes (picked by ``tenfold.training.main.run_training``) or the loop
(``tenfold.training.runner``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
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

    import torch
    import torch.distributed as dist
    from accelerate import PartialState
    from accelerate.utils import reduce

    from tenfold.training.main import run_training, serve_process

    state = PartialState(cpu=not _has_cuda())
    holder: dict[str, Any] = {}

    def average_gradients(model: Any) -> None:
        holder["model"] = model
        for p in model.parameters():
            if p.requires_grad and p.grad is not None:
                p.grad.copy_(reduce(p.grad, reduction="mean"))

    def per_rank(writer: Any) -> Any:
        def emit(event: dict[str, Any]) -> None:  # the main rank reports; any rank reports its own failure
            if state.is_main_process or event.get("type") in ("rank_done", "error"):
                writer({**event, "rank": state.process_index})
        return emit

    def run(spec: Any, emit: Any, should_stop: Any) -> None:
        def agreed_stop() -> bool:
            """A stop asked of any rank (the worker signals them all, not at the same instant) is a stop on
            every rank at the same step, so none waits in a collective for one that has left."""
            flag = torch.tensor([1 if should_stop() else 0], device=state.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            return bool(flag.item())

        if spec.dtype == "auto" and not _has_cuda():  # one measurement, rank 0's, for every rank
            from tenfold.training.runner import resolve_dtype

            chosen = [resolve_dtype(spec) if state.is_main_process else None]
            dist.broadcast_object_list(chosen, src=0)
            spec = spec.model_copy(update={"dtype": chosen[0]})
        done = run_training(spec, emit, agreed_stop, is_main=state.is_main_process, reduce=average_gradients,
                            shard=(state.process_index, state.num_processes))
        state.wait_for_everyone()
        model = holder.get("model")
        emit({"type": "rank_done", "world_size": state.num_processes, "train_loss": done["train_loss"],
              "checksum": _checksum(model) if model is not None else None, "backend": state.backend})

    code = serve_process(args.spec, run, emit=per_rank)
    if dist.is_initialized():
        dist.destroy_process_group()
    return code


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    raise SystemExit(main())
