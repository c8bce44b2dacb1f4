"""The optimizer loop shared by the recipes (``sft``, ``dpo``): setup, steps, events, checkpoints, resume.

Owns: threads/seeds/device, loading the base model with a fresh LoRA (or the weights of ``init_adapter`` for
continued fine-tuning), AdamW with the chosen schedule (linear, cosine or constant after warmup), the step
counter and deterministic data order (``batching.batch_indices``: a permutation per epoch from the seed, so
a resumed run sees the same batches), ``metrics`` events per logged step (train loss, learning rate,
tokens/s, elapsed, ETA and, at the steps ``TrainingSpec.evaluates_at`` names, the validation loss),
checkpoints every ``checkpoint_every`` steps with their metrics and resume state, the final adapter and the
``done`` event (with ``evaluated_tokens``: validation tokens × evaluations, billed with the trained tokens),
and which examples of a step each process takes under DDP (``share_of_step``).
Does not own: what a step computes; a recipe passes a ``Recipe`` with ``step(indices)`` (forward and
backward, so a recipe may accumulate gradients over micro-batches) and ``evaluate()``.
"""

from __future__ import annotations

import math
import os
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tenfold.training import batching, checkpoints
from tenfold.training.errors import TrainingCancelled, TrainingUserError
from tenfold.training.spec import TrainingSpec

Emit = Callable[[dict[str, Any]], None]


def warn_event(emit: Emit, what: str = "") -> Callable[..., None]:
    """A ``warn(message, **counts)`` that emits a ``warning`` event, its message prefixed with ``what``."""
    def warn(message: str, **counts: int) -> None:
        emit({"type": "warning", "message": what + message, **counts})
    return warn


def never() -> bool:
    return False


@dataclass
class StepResult:
    loss: float  # the step's loss; its gradients are already accumulated in the parameters
    n_tokens: int  # tokens processed (billed)
    n_weight: int  # what the loss averages over: trained tokens (sft) or pairs (dpo)
    n_correct: int  # correct tokens (sft) or pairs where chosen beats rejected (dpo)
    extra: dict[str, float] = field(default_factory=dict)  # more per-step metrics, e.g. reward margin


@dataclass
class Recipe:
    name: str
    n_examples: int
    step: Callable[[list[int]], StepResult]  # forward and backward of one optimizer step's examples
    evaluate: Callable[[], dict[str, float]] | None  # validation metrics (valid_loss, …) or None
    accuracy_name: str  # train_mean_token_accuracy (sft) or train_reward_accuracy (dpo)
    eval_tokens: int = 0  # tokens one evaluate() processes (the validation set, as tokenized)


def share_of_step(indices: list[int], shard: tuple[int, int]) -> list[int]:
    """This process's examples of a step under DDP (``shard=(rank, world)``): every ``world``-th from
    ``rank``. A process left with none (a step shorter than ``world``) takes the first, so every process
    runs a backward and joins the gradient all-reduce."""
    rank, world = shard
    return indices[rank::world] or indices[:1]


def device_and_dtype(spec: TrainingSpec | None = None) -> tuple[torch.device, torch.dtype]:
    """The device and the frozen base weights' format. On CUDA bfloat16 (where supported) unless the spec
    says float32; on CPU the spec's ``dtype``, "auto" measured as the engine does (bfloat16 where this CPU
    multiplies it at least 1.3x faster, accurately; float32 elsewhere, e.g. CPUs without bfloat16 dot
    products, where it is several times slower)."""
    wanted = spec.dtype if spec is not None else "auto"
    if torch.cuda.is_available():
        if wanted == "float32" or not torch.cuda.is_bf16_supported():
            return torch.device("cuda"), torch.float32
        return torch.device("cuda"), torch.bfloat16
    if wanted == "auto" and spec is not None:
        wanted = resolve_dtype(spec)
    return torch.device("cpu"), (torch.bfloat16 if wanted == "bfloat16" else torch.float32)


def resolve_dtype(spec: TrainingSpec) -> str:
    """``spec.dtype`` with "auto" decided on this CPU ("float32" or "bfloat16"; float16 would need loss
    scaling, so a CPU whose fastest format is float16 trains in float32). Under DDP rank 0 decides for all."""
    if spec.dtype != "auto" or torch.cuda.is_available() or not spec.base_model_path:
        return spec.dtype if spec.dtype != "auto" else "float32"
    from tenfold.engine.number_format import choose
    from tenfold.engine.shapes import model_shape, read_config

    shape = model_shape(read_config(Path(spec.base_model_path)))
    rows = spec.micro_batch_tokens or 256
    choice = choose("auto", device="cpu", shapes=shape.linear_shapes(rows, rows), threads=torch.get_num_threads(),
                    cache_file=Path(spec.format_cache) if spec.format_cache else None)
    return "bfloat16" if choice.dtype == "bfloat16" else "float32"


def setup_process(spec: TrainingSpec) -> None:
    torch.set_num_threads(spec.torch_threads or max(1, os.cpu_count() or 1))
    random.seed(spec.seed)
    np.random.seed(spec.seed)


def build_model(spec: TrainingSpec, device: torch.device, dtype: torch.dtype) -> tuple[Any, Any]:
    """Tokenizer and the PEFT-wrapped base model (LoRA from ``spec`` or loaded from ``init_adapter``)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not spec.base_model_path:
        raise RuntimeError("spec.base_model_path is not set: the worker must resolve the base model folder")
    tokenizer = AutoTokenizer.from_pretrained(spec.base_model_path)
    model = AutoModelForCausalLM.from_pretrained(spec.base_model_path, dtype=dtype).to(device)
    model.config.use_cache = False
    config = LoraConfig(r=spec.lora_r, lora_alpha=spec.lora_alpha, lora_dropout=spec.lora_dropout,
                        target_modules=spec.target_modules, task_type="CAUSAL_LM", bias="none")
    torch.manual_seed(spec.seed)
    try:
        with warnings.catch_warnings():  # PEFT 0.21 probes a deprecated transformers attribute
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            peft_model = get_peft_model(model, config)
    except ValueError as exc:
        raise TrainingUserError(f"LoRA target_modules {spec.target_modules!r} do not fit this model: {exc}") from None
    for p in peft_model.parameters():
        if p.requires_grad:
            p.data = p.data.float()  # adapter weights and optimizer state in float32
    if spec.init_adapter:
        load_adapter_weights(peft_model, Path(spec.init_adapter), what="continue from")
    return tokenizer, peft_model


def load_adapter_weights(model: Any, folder: Path, *, what: str) -> None:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    path = folder / "adapter_model.safetensors"
    if not path.is_file():
        raise TrainingUserError(f"cannot {what} {folder}: it has no adapter_model.safetensors")
    weights = load_file(str(path))
    try:
        result = set_peft_model_state_dict(model, weights)
    except RuntimeError as exc:  # shape mismatch: another lora_r
        raise TrainingUserError(f"cannot {what} {folder}: the adapter does not match this LoRA config "
                                f"(lora_r, target_modules): {str(exc).splitlines()[1].strip()}") from None
    expected = {k for k in model.state_dict() if "lora_" in k}
    if getattr(result, "unexpected_keys", None) or len(weights) != len(expected):
        raise TrainingUserError(f"cannot {what} {folder}: the adapter does not match this LoRA config "
                                "(lora_r, target_modules)")


def pad_id_of(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def make_scheduler(spec: TrainingSpec, optimizer: Any, total_steps: int) -> Any:
    from transformers import get_scheduler

    name = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}[spec.lr_scheduler]
    return get_scheduler(name, optimizer, num_warmup_steps=math.ceil(spec.warmup_ratio * total_steps),
                         num_training_steps=total_steps)


def run_loop(spec: TrainingSpec, emit: Emit, should_stop: Callable[[], bool], model: Any, recipe: Recipe,
             device: torch.device, *, is_main: bool = True, reduce: Callable[[torch.nn.Module], None] | None = None
             ) -> dict[str, Any]:
    """Train ``model`` with ``recipe`` per ``spec``; emit events; return the ``done`` event.

    ``reduce(model)`` (DDP) averages gradients across processes before clipping; only ``is_main`` writes
    checkpoints and emits events.
    """
    emit = emit if is_main else (lambda event: None)
    batch_size = spec.resolved_batch_size(recipe.n_examples)
    per_epoch = batching.steps_per_epoch(recipe.n_examples, batch_size)
    total_steps = per_epoch * spec.n_epochs
    checkpoint_every = spec.resolved_checkpoint_every(total_steps)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=spec.learning_rate, weight_decay=spec.weight_decay)
    scheduler = make_scheduler(spec, optimizer, total_steps)
    step, trained_tokens, history = 0, 0, []  # history: (loss, n_weight, n_correct) per step
    evals = {"tokens": 0, "n": 0}  # evaluations run so far (restored on resume, like trained_tokens)
    if spec.resume_from:
        step, trained_tokens, history, evals = _resume(spec, model, optimizer, scheduler, total_steps,
                                                       recipe.n_examples)
    evaluate = recipe.evaluate
    n_evals = spec.n_evals(total_steps) if evaluate is not None else 0

    emit({"type": "started", "method": recipe.name, "total_steps": total_steps, "n_examples": recipe.n_examples,
          "epochs": spec.n_epochs, "batch_size": batch_size, "checkpoint_every": checkpoint_every,
          "eval_every": spec.resolved_eval_every(total_steps) if evaluate is not None else 0, "n_evals": n_evals,
          "validation_tokens": recipe.eval_tokens,
          "trainable_params": sum(p.numel() for p in trainable),
          "base_dtype": str(next((p.dtype for p in model.parameters() if not p.requires_grad), torch.float32)
                            ).removeprefix("torch."),
          "total_params": sum(p.numel() for p in model.parameters()),
          "start_step": step, "trained_tokens": trained_tokens, "device": device.type})
    model.train()
    start_time, session_tokens, start_step, last_ckpt = time.monotonic(), 0, step, step
    evaluated: dict[str, float] = {}
    while step < total_steps:
        if should_stop():
            raise TrainingCancelled(step)
        indices = batching.batch_indices(recipe.n_examples, batch_size, spec.seed, step)
        result = recipe.step(indices)
        if reduce is not None:
            reduce(model)
        torch.nn.utils.clip_grad_norm_(trainable, spec.max_grad_norm)
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        trained_tokens += result.n_tokens
        session_tokens += result.n_tokens
        history.append((float(result.loss), result.n_weight, result.n_correct))
        elapsed = time.monotonic() - start_time
        evaluated = {}
        if evaluate is not None and spec.evaluates_at(step, total_steps):
            evaluated = evaluate()
            evals = {"tokens": evals["tokens"] + recipe.eval_tokens, "n": evals["n"] + 1}
        if step % spec.logging_steps == 0 or step == total_steps or evaluated:
            emit({"type": "metrics", "step": step, "total_steps": total_steps,
                  "epoch": round(step / per_epoch, 4), "loss": history[-1][0],
                  "token_accuracy" if recipe.name == "sft" else "reward_accuracy":
                      result.n_correct / max(result.n_weight, 1),
                  "learning_rate": lr, "tokens": trained_tokens,
                  "tokens_per_second": session_tokens / max(elapsed, 1e-9), "elapsed_s": round(elapsed, 3),
                  "eta_s": round(elapsed / (step - start_step) * (total_steps - step), 3),
                  **result.extra, **evaluated})
        if checkpoint_every and step % checkpoint_every == 0:
            metrics = {**window_metrics(step, history[last_ckpt:], recipe.accuracy_name), **evaluated}
            if is_main:
                state = {"step": step, "trained_tokens": trained_tokens, "history": history,
                         "evaluated_tokens": evals["tokens"], "n_evals": evals["n"],
                         "total_steps": total_steps, "n_examples": recipe.n_examples,
                         "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                         "rng": _rng_state()}
                summary = {k: state[k] for k in ("step", "trained_tokens", "total_steps", "n_examples")}
                folder = checkpoints.save_adapter(
                    model, Path(spec.output_dir) / f"step-{step}", spec.base_model,
                    extra=lambda tmp: checkpoints.write_resume_state(tmp, state, summary))
                emit({"type": "checkpoint", "step": step, "path": str(folder), "metrics": metrics})
            last_ckpt = step

    final_metrics = window_metrics(step, history[-per_epoch:], recipe.accuracy_name)
    final = Path(spec.output_dir) / "final"
    if is_main:
        final = checkpoints.save_adapter(model, final, spec.base_model)
    done = {"type": "done", "method": recipe.name, "path": str(final), "trained_tokens": trained_tokens,
            "evaluated_tokens": evals["tokens"], "n_evals": evals["n"], "steps": total_steps,
            "train_loss": final_metrics["train_loss"], recipe.accuracy_name: final_metrics[recipe.accuracy_name]}
    if evaluate is not None:
        # The last step always evaluates; a run resumed from its final checkpoint ran none this session and
        # reports a fresh one (already counted before that checkpoint was saved).
        done.update(evaluated or evaluate())
    emit(done)
    return done


def window_metrics(step: int, window: list[tuple[float, int, int]], accuracy_name: str) -> dict[str, float]:
    """Weighted loss and accuracy over the steps since the previous checkpoint (or the last epoch)."""
    n = sum(w[1] for w in window)
    loss = sum(w[0] * w[1] for w in window) / max(n, 1)
    return {"step": step, "train_loss": loss, accuracy_name: sum(w[2] for w in window) / max(n, 1)}


def _resume(spec: TrainingSpec, model: Any, optimizer: Any, scheduler: Any, total_steps: int,
            n_examples: int) -> tuple[int, int, list[tuple[float, int, int]], dict[str, int]]:
    folder = Path(spec.resume_from or "")
    try:
        state = checkpoints.read_resume_state(folder)
    except FileNotFoundError as exc:
        raise TrainingUserError(str(exc)) from None
    if state["total_steps"] != total_steps or state["n_examples"] != n_examples:
        raise TrainingUserError(
            f"cannot resume from {folder}: it was saved by a run with {state['n_examples']} examples and "
            f"{state['total_steps']} steps, this run has {n_examples} examples and {total_steps} steps")
    load_adapter_weights(model, folder, what="resume from")
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(state["rng"])
    evals = {"tokens": int(state.get("evaluated_tokens", 0)), "n": int(state.get("n_evals", 0))}
    return int(state["step"]), int(state["trained_tokens"]), [tuple(h) for h in state["history"]], evals
