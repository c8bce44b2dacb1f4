"""Direct Preference Optimization of a LoRA adapter: ``run_dpo(spec, emit, should_stop)``.

Owns: the DPO step. For each pair the policy's summed log-probability of the chosen and the rejected reply
(reply tokens only, the prompt masked) is compared with the reference model's:
``loss = -log σ(β · ((π_c − ref_c) − (π_r − ref_r)))``, weighted by the example weight. The reference is
the model the job starts from: the base model, or the adapter named by ``from_checkpoint`` (so "DPO on top
of an SFT checkpoint" keeps that SFT model as its reference). Its log-probabilities are computed once,
before the first step, in eval mode (the same thing as TRL's ``precompute_ref_log_probs``); they depend
only on the starting weights, so a resumed run recomputes identical values and no second model is held in
memory. Per-step metrics: loss, ``reward_margin`` (mean β·(chosen − rejected) log-ratio) and
``reward_accuracy`` (share of pairs where chosen wins).

Why a lean loop rather than TRL's ``DPOTrainer``: it reuses the shared runner (our events, checkpoint
layout, exact resume and billing counter, see ``tenfold.training.sft``) and computes log-probs only at
reply positions; the math is TRL's sigmoid DPO loss. Measured with ``bench/training.py --arms
dpo,trl-dpo`` (bench/RESULTS.md, a noisy shared 2-core box): 2.5x ``DPOTrainer``'s tokens/s with TRL's
defaults, at 1.28x its peak memory (TRL checkpoints activations by default; this loop does not).
Does not own: the optimizer loop (``runner``) or tokenization (``tokenize.tokenize_preferences``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from tenfold.training import batching, runner
from tenfold.training.data import read_examples
from tenfold.training.errors import TrainingCancelled
from tenfold.training.runner import Emit, Recipe, StepResult, never, warn_event
from tenfold.training.spec import TrainingSpec
from tenfold.training.tokenize import PreferencePair, tokenize_preferences


def _pairs(path: str, tokenizer: Any, spec: TrainingSpec, emit: Emit) -> list[PreferencePair]:
    what = "" if path == spec.training_file else "validation file: "
    return tokenize_preferences(tokenizer, read_examples(path, spec), max_length=spec.max_seq_length,
                                warn=warn_event(emit, what))


def _logps(model: Any, pairs: list[PreferencePair], pad_id: int, device: torch.device
           ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(chosen logps [B], rejected logps [B], tokens) in one forward over 2B rows."""
    batch = batching.collate([p.chosen for p in pairs] + [p.rejected for p in pairs], pad_id, device)
    logps = batching.sequence_logps(model, batch)
    return logps[:len(pairs)], logps[len(pairs):], batch.n_tokens


def reference_logps(model: Any, pairs: list[PreferencePair], pad_id: int, device: torch.device,
                    batch_size: int) -> torch.Tensor:
    """[N, 2] reference log-probs (chosen, rejected) of every pair under the current weights."""
    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(pairs), batch_size):
            chosen, rejected, _ = _logps(model, pairs[i:i + batch_size], pad_id, device)
            out.append(torch.stack([chosen, rejected], dim=1))
    if was_training:
        model.train()
    return torch.cat(out).float()


def dpo_loss(policy: torch.Tensor, reference: torch.Tensor, beta: float, weights: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """(weighted mean loss, per-pair reward margin β·((π_c−ref_c) − (π_r−ref_r))). Both inputs [B, 2]."""
    margin = beta * ((policy[:, 0] - reference[:, 0]) - (policy[:, 1] - reference[:, 1]))
    loss = (-F.logsigmoid(margin) * weights).sum() / weights.sum().clamp_min(1e-9)
    return loss, margin.detach()


def run_dpo(spec: TrainingSpec, emit: Emit, should_stop: Callable[[], bool] = never, *,
            is_main: bool = True, reduce: Callable[[Any], None] | None = None,
            shard: tuple[int, int] = (0, 1)) -> dict[str, Any]:
    """Train a LoRA adapter with DPO per ``spec``; return the ``done`` event (also emitted).

    ``shard=(rank, world)``: under DDP (``tenfold.training.ddp``) each process computes the loss of its
    share of every step's pairs, ``reduce`` averages the gradients, and only ``is_main`` reports and writes.
    """
    runner.setup_process(spec)
    device, dtype = runner.device_and_dtype(spec)
    tokenizer, model = runner.build_model(spec, device, dtype)
    pad_id = runner.pad_id_of(tokenizer)
    report = emit if is_main else (lambda event: None)  # one report, from the main process
    train = _pairs(spec.training_file, tokenizer, spec, report)
    valid = _pairs(spec.validation_file, tokenizer, spec, report) if spec.validation_file else []
    if should_stop():
        raise TrainingCancelled(0)
    batch_size = spec.resolved_batch_size(len(train))
    ref_train = reference_logps(model, train, pad_id, device, batch_size)
    ref_valid = reference_logps(model, valid, pad_id, device, batch_size) if valid else None

    def step(indices: list[int]) -> StepResult:
        mine = runner.share_of_step(indices, shard)
        pairs = [train[i] for i in mine]
        chosen, rejected, _ = _logps(model, pairs, pad_id, device)
        weights = torch.tensor([p.weight for p in pairs], device=chosen.device)
        loss, margin = dpo_loss(torch.stack([chosen, rejected], 1), ref_train[mine].to(chosen.device),
                                spec.dpo_beta, weights)
        loss.backward()
        n_tokens = sum(train[i].n_tokens for i in indices)  # the whole step's, under DDP too
        return StepResult(float(loss.detach()), n_tokens, len(pairs), int((margin > 0).sum()),
                          {"reward_margin": float(margin.mean())})

    def evaluate() -> dict[str, float]:
        model.eval()
        losses, margins = [], []
        with torch.no_grad():
            for i in range(0, len(valid), batch_size):
                pairs = valid[i:i + batch_size]
                chosen, rejected, _ = _logps(model, pairs, pad_id, device)
                weights = torch.tensor([p.weight for p in pairs], device=chosen.device)
                loss, margin = dpo_loss(torch.stack([chosen, rejected], 1),
                                        ref_valid[i:i + batch_size].to(chosen.device), spec.dpo_beta, weights)
                losses.append(float(loss) * len(pairs))
                margins.append(margin)
        model.train()
        all_margins = torch.cat(margins)
        return {"valid_loss": sum(losses) / len(valid), "valid_reward_margin": float(all_margins.mean()),
                "valid_reward_accuracy": float((all_margins > 0).float().mean())}

    recipe = Recipe("dpo", len(train), step, evaluate if valid else None, "train_reward_accuracy",
                    eval_tokens=sum(p.n_tokens for p in valid))
    return runner.run_loop(spec, emit, should_stop, model, recipe, device, is_main=is_main, reduce=reduce)
