"""Importance-weighted Φ for the off-policy policy gradient, a pure function of explicit tensors (Rossi ch. 4,
Atreya §2.1, Yin §4.4). The loss itself is REINFORCE's surrogate −(1/|D|) Σ_τ Σ_t log π_θ · sg(Ψ_t).

With ρ_t = π_θ(a_t|s_t)/π_β(a_t|s_t), W_t = Π_{t'≤t} ρ_{t'} and Φ_t = returns − baseline:

| kind | Ψ_t | seed |
|---|---|---|
| ``trajectory`` | w(τ)·Φ_t, w(τ) = Π_{t∈τ} ρ_t | 004 eq. 4.3, 000 eq. 34 (exact) |
| ``per_decision`` | Σ_{l≥t} γ^{l−t} W_l r_l − W_t b_t | 004 eq. 4.4, 000 eq. 35 (exact) |
| ``current`` | W_t·Φ_t (Π_after dropped) | 004 eq. 4.6, 001 §4.4 ("policy iteration") |
| ``first_order`` | ρ_t·Φ_t | 004 eq. 4.7–4.8 and Alg. 4.1, 001 §4.4 |

Because log π_θ(a_t|s_t) carries the gradient and Ψ is detached, ∇ of the surrogate is Σ_t ∇log π_t Ψ_t, which is
each equation's estimator term for term (e.g. ``first_order``: ρ_t ∇log π_t Φ_t = ∇ρ_t Φ_t, the gradient of Alg.
4.1's −Σ_t ρ_t(θ) G_t). Subtracting a state baseline keeps every kind's expectation: E_β[W_t ∇log π_t b(s_t)] =
E_θ[∇log π_t b(s_t)] = 0.
"""

from __future__ import annotations

from typing import Literal

import torch

from lrl.estimators import clip_log_weights, log_importance_weights, reward_to_go

Importance = Literal["trajectory", "per_decision", "current", "first_order"]


def off_policy_advantages(log_ratio: torch.Tensor, done: torch.Tensor, *, kind: Importance,
                          returns: torch.Tensor, baseline: torch.Tensor, reward: torch.Tensor,
                          bootstrap: torch.Tensor, gamma: float, discounting: Literal["relative", "absolute"],
                          min_weight: float | None = None, max_weight: float | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Ψ, the weights used, a mask of the weights that hit a clip bound), all [..., T].

    ``log_ratio`` must be 0 on padding; ``returns``/``baseline`` are Φ's two parts in the chosen discount
    convention (``reward``, ``bootstrap`` and ``discounting`` are read by ``per_decision`` only, which weights
    each reward by the ratios up to its own time).
    """
    base = {"trajectory": "trajectory", "per_decision": "per_decision", "current": "per_decision",
            "first_order": "first_order"}[kind]
    raw = log_importance_weights(log_ratio, done, base)  # type: ignore[arg-type]
    log_w = clip_log_weights(raw, min_weight, max_weight)
    clipped = log_w != raw
    w = log_w.exp().float()
    if kind == "per_decision":
        weighted = reward_to_go(w * reward, done, gamma, discounting=discounting, bootstrap=w * bootstrap)
        return weighted - w * baseline, w, clipped
    return w * (returns - baseline), w, clipped
