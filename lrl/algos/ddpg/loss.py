"""Deterministic actor-critic losses as pure functions of explicit tensors (Rossi ch. 9, Alg. 9.4).

    critic target   y = r + γ (1 − terminated) · Q_ψ'(s', μ_θ'(s'))        (no gradient: a constant, §2.1)
    critic loss     L(ψ) = Σ_i mean_B (Q_ψi(s, a) − y)²                   (n = 1 for DDPG, 2 for TD3)
    actor loss      L(θ) = −mean_B Q_ψ(s, μ_θ(s))                          (its gradient is the DPG, eq. 9.10)

The seed writes the critic step as ψ ← ψ + ω (1/M) Σ (y − Q) ∇Q: the negative gradient of half the squared
error; the factor 2 of the squared error (as in SB3, Fujimoto et al. and TorchRL's ``l2``) goes into the step size.
A time-limit truncation bootstraps like any other step; only ``terminated`` zeroes the bootstrap.
The critic and actor losses, shared with TD3 (which has its own next-state value: min of twin critics, smoothed
a'), are :func:`lrl.estimators.losses.q_regression_loss` and :func:`lrl.estimators.losses.deterministic_actor_loss`.
"""

from __future__ import annotations

import torch

from lrl.estimators.targets import td_target


def critic_target(reward: torch.Tensor, terminated: torch.Tensor, next_q: torch.Tensor, gamma: float) -> torch.Tensor:
    """y = r + γ (1 − terminated) Q'(s', a'); ``next_q`` is the target critic's value of the next action, ``[B]``."""
    return td_target(reward, next_q, terminated, gamma)
