"""Supervised LoRA fine-tuning: ``run_sft(spec, emit, should_stop)``.

Owns: the SFT step (masked next-token loss on padded or packed micro-batches of at most
``micro_batch_tokens`` positions, gradients accumulated with the step's normalizer) and its validation loss.
Does not own: the shared optimizer loop, events, checkpoints and resume (``runner``), the entry point that
picks a recipe by method and its stdout/exit-code protocol (``main``), batching and loss (``batching``),
tokenization (``tokenize``).

Why a lean loop rather than TRL's ``SFTTrainer``: we need (1) our own event stream, one JSON line per
step/checkpoint, without parsing trainer logs; (2) checkpoint folders in our layout (two serving files,
``base_model_name_or_path`` set, resume state apart, atomic rename) instead of ``checkpoint-N`` with
tokenizer copies, trainer state and model card; (3) exact resume, including the data position and the
token counter that billing uses (a known weak spot of trainer-based stacks); (4) loss masks verified
against the chat template for any append-only template, where TRL needs ``{% generation %}`` markers
or swaps in its own template; (5) no TRL/datasets/accelerate imports (startup 4.9 s against 6.0 s, most of
it importing transformers and peft); (6) logits only at trained positions. The per-step math (AdamW,
linear warmup/decay, gradient clipping, padded batches) is the same as TRL's. Measured side by side on
this 2-core CPU (SmolLM2-135M fp32, the 106-example demo set, 1 epoch = 14 steps of 8, r=16 all-linear,
2 threads, TRL 1.16 with gradient checkpointing off, no packing, completion-only loss): TRL 35.1 s of
training (41.4 s wall incl. imports and setup), this loop 23.6 s (29.0 s wall), so TRL was not faster;
``bench/training.py`` repeats the comparison (bench/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from tenfold.training import batching, runner
from tenfold.training.data import read_examples
from tenfold.training.errors import TrainingCancelled
from tenfold.training.runner import Emit, Recipe, StepResult, never, warn_event
from tenfold.training.spec import TrainingSpec
from tenfold.training.tokenize import DatasetStats, TokenizedExample, tokenize_dataset


def _load_examples(path: str, tokenizer: Any, spec: TrainingSpec, emit: Emit,
                   stats: DatasetStats | None = None) -> list[TokenizedExample]:
    what = "" if path == spec.training_file else "validation file: "
    return tokenize_dataset(tokenizer, read_examples(path, spec), max_length=spec.max_seq_length,
                            train_on_inputs=spec.train_on_inputs, warn=warn_event(emit, what), stats=stats)


def _collate(spec: TrainingSpec, examples: list[TokenizedExample], pad_id: int, device: torch.device
             ) -> batching.Batch:
    if spec.packing:
        return batching.collate_packed(examples, pad_id, spec.max_seq_length, device)
    return batching.collate(examples, pad_id, device)


def _evaluate(model: Any, spec: TrainingSpec, examples: list[TokenizedExample], batch_size: int, pad_id: int,
              device: torch.device) -> dict[str, float]:
    model.eval()
    total_loss, total_n, total_correct = 0.0, 0, 0
    with torch.no_grad():
        for i in range(0, len(examples), batch_size):
            stats = batching.compute_loss(model, _collate(spec, examples[i:i + batch_size], pad_id, device))
            total_loss += float(stats.loss) * stats.n_trained
            total_n += stats.n_trained
            total_correct += stats.n_correct
    model.train()
    return {"valid_loss": total_loss / max(total_n, 1), "valid_mean_token_accuracy": total_correct / max(total_n, 1)}


def run_sft(spec: TrainingSpec, emit: Emit, should_stop: Callable[[], bool] = never, *,
            is_main: bool = True, reduce: Callable[[Any], None] | None = None,
            shard: tuple[int, int] = (0, 1)) -> dict[str, Any]:
    """Train one LoRA adapter as described by ``spec``; return the ``done`` event (also emitted).

    Raises ``TrainingUserError`` (incl. ``DatasetError``) for problems the user can fix,
    ``TrainingCancelled`` when ``should_stop()`` turns true, anything else for internal errors.
    ``shard=(rank, world)``: under DDP each process computes its share of every step's examples.
    """
    runner.setup_process(spec)
    device, dtype = runner.device_and_dtype(spec)
    tokenizer, model = runner.build_model(spec, device, dtype)
    pad_id = runner.pad_id_of(tokenizer)
    report = emit if is_main else (lambda event: None)  # one report, from the main process
    train = _load_examples(spec.training_file, tokenizer, spec, report)
    valid = _load_examples(spec.validation_file, tokenizer, spec, report) if spec.validation_file else []
    if should_stop():
        raise TrainingCancelled(0)
    batch_size = spec.resolved_batch_size(len(train))
    budget = (spec.micro_batch_tokens if spec.micro_batch_tokens is not None
              else batching.default_micro_batch_tokens(device))

    def step(indices: list[int]) -> StepResult:
        mine = [train[i] for i in runner.share_of_step(indices, shard)]
        n_trained = sum(batching.n_targets(e) for e in mine)
        loss, n_correct = 0.0, 0
        for group in batching.micro_batches(mine, max_tokens=budget, packed=spec.packing):
            stats = batching.compute_loss(model, _collate(spec, group, pad_id, device), normalizer=n_trained)
            stats.loss.backward()  # frees this micro-batch's activations before the next one
            loss += float(stats.loss.detach())
            n_correct += stats.n_correct
        n_tokens = sum(len(train[i].input_ids) for i in indices)  # the whole step's, under DDP too
        return StepResult(loss, n_tokens, n_trained, n_correct)

    evaluate = (lambda: _evaluate(model, spec, valid, batch_size, pad_id, device)) if valid else None
    recipe = Recipe("sft", len(train), step, evaluate, "train_mean_token_accuracy",
                    eval_tokens=sum(len(e.input_ids) for e in valid))
    return runner.run_loop(spec, emit, should_stop, model, recipe, device, is_main=is_main, reduce=reduce)
