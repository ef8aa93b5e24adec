"""Reward-model losses (Rossi §15.2.3, eq. 15.4-15.6, the candidate indices of eq. 15.5/15.6 read as y_0..y_3),
pure functions of the rewards r̂(x, y) the model gives each candidate.

Indices follow the corrected equations: candidates y_0..y_{K-1} (the seed prints y_0, y_1, y_3, y_4 in 15.5), and the
second line of 15.6 reads P̂(y_j ≻ y_i).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pairwise_loss(r0: torch.Tensor, r1: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Eq. 15.4 (Stiennon): −mean[(1−b) log σ(r0 − r1) + b log σ(r1 − r0)], with ``b`` ∈ {0, 1} the index of the
    preferred response; equal to BCE-with-logits of (r1 − r0) against b."""
    b = b.to(r0.dtype)
    diff = r0 - r1
    return -((1 - b) * F.logsigmoid(diff) + b * F.logsigmoid(-diff)).mean()


def four_way_loss(rewards: torch.Tensor, best: torch.Tensor) -> torch.Tensor:
    """Eq. 15.5 (Ziegler): −mean log softmax_i(r̂(x, y_i))_b over the 4 candidates ([B, 4] rewards, ``best`` [B] the
    index b of the chosen one); the cross-entropy over 4 logits."""
    if rewards.shape[-1] != 4:
        raise ValueError(f"the 4-way loss takes 4 candidates per prompt, got {rewards.shape[-1]}")
    return -torch.log_softmax(rewards, dim=-1).gather(-1, best.long().unsqueeze(-1)).squeeze(-1).mean()


def pair_indices(k: int, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The C(K, 2) pairs (i < j) of K candidates, as two index vectors."""
    i, j = torch.triu_indices(k, k, 1, device=device)
    return i, j


def kwise_loss(rewards: torch.Tensor, utility: torch.Tensor) -> torch.Tensor:
    """Eq. 15.6 (Ouyang): each prompt (one row of [B, K] ``rewards``) is ONE batch element; its loss averages the
    pairwise loss over all C(K, 2) pairs (i, j), with b_ij = 1 when the annotator ranks y_j above y_i
    (``utility[j] > utility[i]``); the batch loss is the mean over prompts."""
    i, j = pair_indices(rewards.shape[-1], rewards.device)
    diff = rewards[:, i] - rewards[:, j]
    b = (utility[:, j] > utility[:, i]).to(rewards.dtype)
    per_pair = -((1 - b) * F.logsigmoid(diff) + b * F.logsigmoid(-diff))
    return per_pair.mean(dim=-1).mean()


def pair_accuracy(rewards: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(pairs the rewards order as ``target`` does, pairs counted) over the C(K, 2) pairs of each row whose targets
    differ (ties tell nothing)."""
    i, j = pair_indices(rewards.shape[-1], rewards.device)
    dt = target[:, i] - target[:, j]
    counted = dt != 0
    right = ((rewards[:, i] - rewards[:, j]) * dt > 0) & counted
    return right.sum(), counted.sum()
