"""Batches and the masked loss for supervised fine-tuning.

Owns: the deterministic example order (a fresh permutation per epoch from ``seed + epoch``, so the data
position of a resumed run is just the global step), padding a batch to its longest sequence, and the loss:
``sum(weight * token_cross_entropy) / number_of_trained_tokens`` over trained positions (weights default to
1, so this is the plain mean), plus token accuracy. Logits are computed only at trained positions, which
skips most of the output-head work when only assistant replies are trained.
A step may run as several micro-batches of at most a token budget each (``micro_batches``), with
gradients accumulated: same examples, same normalizer, same math, less activation memory.
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
    position_ids: torch.Tensor | None = None  # packed rows: positions restart at each example


def collate_packed(examples: Sequence[TokenizedExample], pad_id: int, max_length: int,
                   device: torch.device | str = "cpu") -> Batch:
    """Pack the examples of one step into as few rows of at most ``max_length`` tokens as first-fit allows.

    Positions restart at 0 for every example and no attention mask is passed, so transformers builds a
    block-diagonal causal mask from the positions: no token attends across examples. The first token of
    each example is not a prediction target, so the loss equals the unpacked loss.
    """
    rows: list[list[TokenizedExample]] = []
    room: list[int] = []
    for e in sorted(examples, key=lambda e: -len(e.input_ids)):
        n = len(e.input_ids)
        for i, free in enumerate(room):
            if n <= free:
                rows[i].append(e)
                room[i] -= n
                break
        else:
            rows.append([e])
            room.append(max_length - n)
    length = max(max_length - r for r in room)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    pos = torch.zeros((len(rows), length), dtype=torch.long)
    weights = torch.zeros((len(rows), length), dtype=torch.float32)
    for r, members in enumerate(rows):
        at = 0
        for e in members:
            n = len(e.input_ids)
            ids[r, at:at + n] = torch.tensor(e.input_ids, dtype=torch.long)
            pos[r, at:at + n] = torch.arange(n)
            weights[r, at:at + n] = torch.tensor(e.weights, dtype=torch.float32)
            weights[r, at] = 0.0  # an example's first token is not predicted from the previous example
            at += n
        pos[r, at:] = torch.arange(length - at)  # padding is its own block
    n_tokens = sum(len(e.input_ids) for e in examples)
    mask = torch.ones_like(ids)
    return Batch(ids.to(device), mask.to(device), weights.to(device), n_tokens, pos.to(device))


def n_targets(example: TokenizedExample) -> int:
    """Positions of ``example`` that the loss averages over (its first token is never a target)."""
    return sum(1 for w in example.weights[1:] if w > 0)


# SmolLM2-135M, bench/training.py (bench/RESULTS.md, 2026-12-02): peak RSS 18 % below one pass, same tok/s.
CPU_MICRO_BATCH_TOKENS = 256


def default_micro_batch_tokens(device: torch.device) -> int:
    """Token budget of one forward/backward pass: bounded on CPU, where memory is the host's and small GEMMs
    cost little; one pass per step on GPUs, where bigger batches are faster."""
    return 0 if device.type == "cuda" else CPU_MICRO_BATCH_TOKENS


def micro_batches(examples: Sequence[TokenizedExample], *, max_tokens: int, packed: bool
                  ) -> list[list[TokenizedExample]]:
    """Split one step's examples into groups whose forward pass holds at most ``max_tokens`` positions
    (a padded group counts rows x its longest example; a packed group counts its tokens), longest first so a
    padded group holds examples of similar length. An example longer than ``max_tokens`` is a group of its
    own; ``max_tokens=0`` keeps the step in one group. Gradients accumulated over the groups with the step's
    normalizer (``compute_loss(..., normalizer=)``) equal those of the whole step in one pass."""
    if max_tokens <= 0:
        return [list(examples)]
    groups: list[list[TokenizedExample]] = [[]]
    for e in sorted(examples, key=lambda e: -len(e.input_ids)):
        group = groups[-1]
        if packed:
            grown = sum(len(x.input_ids) for x in group) + len(e.input_ids)
        else:  # rows padded to the group's first (longest) example
            grown = (len(group) + 1) * len((group or [e])[0].input_ids)
        if group and grown > max_tokens:
            groups.append([])
        groups[-1].append(e)
    return groups


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


def _inputs(batch: Batch) -> dict[str, torch.Tensor]:
    if batch.position_ids is not None:  # packed: no 2-D mask, so the mask comes from the positions
        return {"input_ids": batch.input_ids, "position_ids": batch.position_ids}
    return {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}


def sequence_logps(model: Any, batch: Batch) -> torch.Tensor:
    """Per-row sum of log-probabilities of the trained tokens (``target_weights > 0``), shape [B]."""
    targets = batch.input_ids[:, 1:]
    selected = batch.target_weights[:, 1:] > 0
    split = decoder_and_head(model)
    if split is not None:
        decoder, head = split
        hidden = decoder(**_inputs(batch)).last_hidden_state
        logits = head(hidden[:, :-1][selected]).float()
    else:
        logits = model(**_inputs(batch)).logits[:, :-1][selected].float()
    token_logps = torch.log_softmax(logits, dim=-1).gather(-1, targets[selected].unsqueeze(-1)).squeeze(-1)
    rows = torch.arange(batch.input_ids.shape[0], device=token_logps.device).unsqueeze(1).expand_as(selected)
    out = torch.zeros(batch.input_ids.shape[0], dtype=token_logps.dtype, device=token_logps.device)
    return out.index_add(0, rows[selected], token_logps)


def compute_loss(model: Any, batch: Batch, *, normalizer: int | None = None) -> StepStats:
    """Weighted next-token loss over trained positions (see module docstring), divided by ``normalizer``
    (default: this batch's trained positions; a micro-batch passes its whole step's)."""
    targets = batch.input_ids[:, 1:]
    weights = batch.target_weights[:, 1:]
    selected = weights > 0
    split = decoder_and_head(model)
    if split is not None:
        decoder, head = split
        hidden = decoder(**_inputs(batch)).last_hidden_state
        logits = head(hidden[:, :-1][selected]).float()
    else:
        out = model(**_inputs(batch))
        logits = out.logits[:, :-1][selected].float()
    labels = targets[selected]
    token_loss = F.cross_entropy(logits, labels, reduction="none")
    n_trained = int(selected.sum())
    loss = (token_loss * weights[selected]).sum() / max(n_trained if normalizer is None else normalizer, 1)
    with torch.no_grad():
        n_correct = int((logits.argmax(-1) == labels).sum())
    return StepStats(loss=loss, n_trained=n_trained, n_correct=n_correct)
