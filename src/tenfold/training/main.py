"""The training entry point: ``python -m tenfold.training.main --spec spec.json`` runs the recipe the spec's
``method`` names (``run_training``: ``sft`` or ``dpo``; also what the multi-process launcher ``ddp`` calls),
mirrored to a Weights & Biases run when the spec asks for one (``tenfold.training.wandb_run``).

Owns the dispatch by method and the process protocol the worker relies on:

- stdout carries only events, one JSON object per line, flushed: ``started``, ``metrics``, ``checkpoint``,
  ``warning``, ``info``, ``done``, and on failure ``error`` (``message``, ``user_error``) or, after SIGTERM,
  ``cancelled`` (``step``). Library output written to fd 1 is redirected to stderr. The W&B API key (in the
  environment only) is replaced by ``***`` should an event's message contain it.
- exit codes: 0 done; 1 error (``user_error`` true for bad data/hyperparameters/template, false for
  internal errors, whose traceback goes to stderr); 143 stopped by SIGTERM (128 + 15).
- SIGTERM (and SIGINT) set a flag that the loop checks before every step, so the process stops within one
  step; a checkpoint being written is finished first (folders appear atomically), completed ones remain.
Does not own: the recipes themselves (``tenfold.training.sft``, ``tenfold.training.dpo``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from tenfold.training.runner import Emit
    from tenfold.training.spec import TrainingSpec

EXIT_CANCELLED = 143


def run_training(spec: TrainingSpec, emit: Emit, should_stop: Callable[[], bool] | None = None,
                 **kwargs: Any) -> dict[str, Any]:
    """Run the recipe named by ``spec.method`` (``kwargs``: ``is_main``, ``reduce``, ``shard`` under DDP)."""
    from tenfold.training.runner import never

    if spec.method == "dpo":
        from tenfold.training.dpo import run_dpo as recipe
    else:
        from tenfold.training.sft import run_sft as recipe
    if spec.wandb is None or not kwargs.get("is_main", True):
        return recipe(spec, emit, should_stop or never, **kwargs)
    from tenfold.training.wandb_run import WandbRun

    run = WandbRun(spec, emit)
    run.start()
    failed = True
    try:
        done = recipe(spec, run, should_stop or never, **kwargs)
        failed = False
        return done
    finally:
        run.finish(failed=failed)


class _EventWriter:
    def __init__(self, stream: TextIO, *, secrets: tuple[str, ...] = ()) -> None:
        self.stream = stream
        self.secrets = tuple(s for s in secrets if s)

    def __call__(self, event: dict[str, Any]) -> None:
        message = event.get("message")
        if isinstance(message, str) and any(s in message for s in self.secrets):  # text from libraries
            for secret in self.secrets:
                message = message.replace(secret, "***")
            event = {**event, "message": message}
        self.stream.write(json.dumps(event, separators=(",", ":"), default=str) + "\n")
        self.stream.flush()


def _claim_stdout() -> TextIO:
    """Keep a private handle on the real stdout for events; point fd 1 and ``sys.stdout`` at stderr."""
    sys.stdout.flush()
    events_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(events_fd, "w", buffering=1, encoding="utf-8")


Run = Callable[["TrainingSpec", "Emit", Callable[[], bool]], Any]


def serve_process(spec_path: str, run: Run, *, emit: Callable[[dict], None] | None = None) -> int:
    """The process protocol around ``run(spec, emit, should_stop)`` (the module docstring): events on the real
    stdout, SIGTERM → stop flag, the spec loaded and validated, every outcome an event and an exit code. The
    multi-process launcher (``ddp``) passes its own ``emit`` (only the main rank reports) and ``run``."""
    writer = _EventWriter(_claim_stdout(), secrets=(os.environ.get("WANDB_API_KEY", ""),))
    emit = emit(writer) if emit is not None else writer
    stop = {"requested": False}

    def _on_signal(signum: int, frame: Any) -> None:
        stop["requested"] = True

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from pydantic import ValidationError

    from tenfold.training.errors import TrainingCancelled, TrainingUserError
    from tenfold.training.spec import TrainingSpec

    try:
        spec = TrainingSpec.model_validate_json(Path(spec_path).read_text())
    except (OSError, ValidationError) as exc:
        emit({"type": "error", "message": f"invalid training spec {spec_path}: {exc}", "user_error": True})
        return 1
    if stop["requested"]:
        emit({"type": "cancelled", "step": 0})
        return EXIT_CANCELLED
    try:
        run(spec, emit, lambda: stop["requested"])
    except TrainingCancelled as exc:
        emit({"type": "cancelled", "step": exc.step})
        return EXIT_CANCELLED
    except TrainingUserError as exc:
        emit({"type": "error", "message": str(exc), "user_error": True})
        return 1
    except Exception as exc:  # noqa: BLE001 - every other failure is reported as internal
        traceback.print_exc(file=sys.stderr)
        emit({"type": "error", "message": f"internal error: {type(exc).__name__}: {exc}", "user_error": False})
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tenfold.training.main", description=__doc__)
    parser.add_argument("--spec", required=True, help="path of a TrainingSpec JSON file")
    args = parser.parse_args(argv)
    return serve_process(args.spec, run_training)


if __name__ == "__main__":
    raise SystemExit(main())
