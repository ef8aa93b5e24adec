"""Importance weights for off-policy policy gradients, computed in log space within episodes.

For trajectories from a behaviour policy β, P_θ(τ)/P_β(τ) = Π_t π_θ(a_t|s_t)/π_β(a_t|s_t): the initial-state and
transition probabilities cancel (Rossi eq. 4.3, Atreya eq. 32–33). With
ρ_t = π_θ(a_t|s_t)/π_β(a_t|s_t) and the layout of :mod:`lrl.estimators.returns` (``done`` ends episodes):

- ``trajectory``: w(τ) = Π_{t ∈ τ} ρ_t, the same for every step of the episode (Rossi eq. 4.3, Atreya eq. 34);
- ``per_decision``: W_t = Π_{t' ≤ t} ρ_{t'} within the episode, "Π_current" of Rossi eq. 4.4–4.6 (Atreya
  eq. 35; Yin starts the inner product at t'' = t, a typo);
- ``first_order``: ρ_t alone (Rossi eq. 4.7–4.8, Alg. 4.1; Yin's "ignore the ratio of state priors").

Products are sums of log-ratios (float64) and one ``exp``; clipping happens in log space too, so a product that
overflows float32 before truncation is still truncated correctly.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from lrl.estimators.returns import episode_cumsum, episode_sum

WeightKind = Literal["trajectory", "per_decision", "first_order"]


def log_importance_weights(log_ratio: torch.Tensor, done: torch.Tensor, kind: WeightKind) -> torch.Tensor:
    """log w per step for ``kind``, from per-step log-ratios log π_θ(a_t|s_t) − log π_β(a_t|s_t) (float64).

    Padding steps must carry a log-ratio of 0 (they then leave every product unchanged).
    """
    if kind == "trajectory":
        return episode_sum(log_ratio, done)
    if kind == "per_decision":
        return episode_cumsum(log_ratio, done)
    if kind == "first_order":
        return log_ratio.double()
    raise ValueError(f"unknown importance weight kind {kind!r}")


def clip_log_weights(log_w: torch.Tensor, min_weight: float | None = None,
                     max_weight: float | None = None) -> torch.Tensor:
    """Clip weights to [min_weight, max_weight] in log space. ``max_weight`` alone is truncation, w ← min(w, c̄)
    (ACER, V-trace; [NOT IN SEEDS], which only warn that products "explode or vanish"); both bounds give a
    PPO-like clip range [1−ε, 1+ε]."""
    low = math.log(min_weight) if min_weight is not None and min_weight > 0 else None
    high = math.log(max_weight) if max_weight is not None else None
    if low is None and high is None:
        return log_w
    return log_w.clamp(min=low, max=high)


def importance_weights(log_ratio: torch.Tensor, done: torch.Tensor, kind: WeightKind, *,
                       min_weight: float | None = None, max_weight: float | None = None) -> torch.Tensor:
    """Per-step importance weights of ``kind`` (float32), optionally clipped; see the module docstring."""
    log_w = clip_log_weights(log_importance_weights(log_ratio, done, kind), min_weight, max_weight)
    return log_w.exp().float()


def effective_sample_size(weights: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Kish's effective sample size (Σw)² / Σw² over the entries where ``mask`` is True (all by default).

    Equal to the number of entries when every weight is equal, and to 1 when a single weight dominates: the
    "effective dataset size" that products of ratios shrink (Atreya §2.1).
    """
    w = weights.double() if mask is None else weights.double()[mask]
    return w.sum().pow(2) / w.pow(2).sum().clamp_min(1e-300)
