"""Deterministic actor-critic losses as pure functions of explicit tensors (seed 004 ch. 9, Alg. 9.4).

    critic target   y = r + γ (1 − terminated) · Q_ψ'(s', μ_θ'(s'))        (no gradient: a constant, §2.1)
    critic loss     L(ψ) = Σ_i mean_B (Q_ψi(s, a) − y)²                   (n = 1 for DDPG, 2 for TD3)
    actor loss      L(θ) = −mean_B Q_ψ(s, μ_θ(s))                          (its gradient is the DPG, eq. 9.10)

The seed writes the critic step as ψ ← ψ + ω (1/M) Σ (y − Q) ∇Q: the negative gradient of half the squared
error; the factor 2 of the squared error (as in SB3, Fujimoto et al. and TorchRL's ``l2``) goes into the step size.
A time-limit truncation bootstraps like any other step; only ``terminated`` zeroes the bootstrap.
TD3 (``lrl.algos.td3.loss``) reuses these with its own next-state value (min of twin critics, smoothed a').
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from lrl.estimators.targets import td_target


def critic_target(reward: torch.Tensor, terminated: torch.Tensor, next_q: torch.Tensor, gamma: float) -> torch.Tensor:
    """y = r + γ (1 − terminated) Q'(s', a'); ``next_q`` is the target critic's value of the next action, ``[B]``."""
    return td_target(reward, next_q, terminated, gamma)


def critic_loss(q: torch.Tensor, target: torch.Tensor, kind: Literal["mse", "huber"] = "mse") -> torch.Tensor:
    """Σ over critics of the mean squared (or Huber, δ = 1) error; ``q`` is ``[n, B]``, ``target`` ``[B]``.

    Every critic regresses to the same ``target`` (TD3: "both networks go through a q-learning step using the same
    target value", seed 004 §10.2). The target must carry no gradient.
    """
    q = q.float()
    y = target.expand_as(q)
    per_critic = F.mse_loss(q, y, reduction="none") if kind == "mse" else F.smooth_l1_loss(q, y, reduction="none")
    return per_critic.mean(-1).sum()


def actor_loss(q_of_policy_action: torch.Tensor) -> torch.Tensor:
    """−mean Q(s, μ_θ(s)): descending it ascends the deterministic policy gradient ∇_θ μ_θ(s) ∇_a Q(s, a)|a=μ(s)
    (seed 004 eq. 9.10; "it could just have been written as ∇_θ Q_ψ(s, μ_θ(s))", §9.6)."""
    return -q_of_policy_action.float().mean()
