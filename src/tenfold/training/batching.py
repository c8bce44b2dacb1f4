"""Batches and the masked loss for supervised fine-tuning.

Owns: the deterministic example order (a fresh permutation per epoch from ``seed + epoch``, so the data
position of a resumed run is just the global step), padding a batch to its longest sequence, and the loss:
``sum(weight * token_cross_entropy) / number_of_trained_tokens`` over trained positions (weights default to
1, so this is the plain mean), plus token accuracy. Logits are computed only at trained positions, which
skips most of the output-head work when only assistant replies are trained.
Does not own: tokenization (``tenfold.training.tokenize``) or the optimizer loop (``tenfold.training.sft``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from tenfold.training.tokenize import TokenizedExample


@dataclass
class Batch:
    input_ids: torch.Tensor  # [B, T]
    attention_mask: torch.Tensor  # [B, T]
    target_weights: torch.Tensor  # [B, T]: weight of predicting input_ids[:, t] from position t-1
    n_tokens: int  # non-pad tokens (what gets billed)


@dataclass
class StepStats:
    loss: torch.Tensor  # scalar, differentiable
    n_trained: int
    n_correct: int


def epoch_order(n_examples: int, seed: int, epoch: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed * 1000003 + epoch)
    return torch.randperm(n_examples, generator=generator).tolist()


def steps_per_epoch(n_examples: int, batch_size: int) -> int:
    return -(-n_examples // batch_size)


def batch_indices(n_examples: int, batch_size: int, seed: int, step: int) -> list[int]:
    """Example indices of global step ``step`` (0-based)."""
    per_epoch = steps_per_epoch(n_examples, batch_size)
    epoch, position = divmod(step, per_epoch)
    order = epoch_order(n_examples, seed, epoch)
    return order[position * batch_size:(position + 1) * batch_size]


def collate(examples: Sequence[TokenizedExample], pad_id: int, device: torch.device | str = "cpu") -> Batch:
    length = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), length), dtype=torch.long)
    weights = torch.zeros((len(examples), length), dtype=torch.float32)
    for row, e in enumerate(examples):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids, dtype=torch.long)
        mask[row, :n] = 1
        weights[row, :n] = torch.tensor(e.weights, dtype=torch.float32)
    weights[:, 0] = 0.0  # the first token has no prediction
    n_tokens = int(mask.sum())
    return Batch(ids.to(device), mask.to(device), weights.to(device), n_tokens)


def decoder_and_head(model: Any) -> tuple[Any, Any] | None:
    """The transformer trunk and the output head of a (PEFT-wrapped) causal LM, when they can be split."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    get_decoder = getattr(inner, "get_decoder", None)
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    if get_decoder is None or head is None:
        return None
    decoder = get_decoder()
    return (decoder, head) if decoder is not None else None


def compute_loss(model: Any, batch: Batch) -> StepStats:
    """Weighted next-token loss over trained positions (see module docstring)."""
    targets = batch.input_ids[:, 1:]
    weights = batch.target_weights[:, 1:]
    selected = weights > 0
    split = decoder_and_head(model)
    if split is not None:
        decoder, head = split
        hidden = decoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        logits = head(hidden[:, :-1][selected]).float()
    else:
        out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        logits = out.logits[:, :-1][selected].float()
    labels = targets[selected]
    token_loss = F.cross_entropy(logits, labels, reduction="none")
    n_trained = int(selected.sum())
    loss = (token_loss * weights[selected]).sum() / max(n_trained, 1)
    with torch.no_grad():
        n_correct = int((logits.argmax(-1) == labels).sum())
    return StepStats(loss=loss, n_trained=n_trained, n_correct=n_correct)
