"""Monte-Carlo policy-gradient losses as pure functions of explicit tensors (seed 004 ch. 3, seed 001 ch. 4,
seed 000 §2). Losses are minimised, so the policy-gradient surrogate enters with a minus sign.

Shared by ``reinforce`` and ``offpg``: off-policy PG is the same surrogate with importance-weighted Φ.
"""

from __future__ import annotations

from typing import Literal

import torch

from lrl.estimators import episode_return, episode_timestep, reward_to_go

Returns = Literal["reward_to_go", "episode"]
Discounting = Literal["relative", "absolute"]


def monte_carlo_returns(reward: torch.Tensor, done: torch.Tensor, gamma: float, *, returns: Returns,
                        discounting: Discounting, bootstrap: torch.Tensor | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Φ before any baseline, the value-regression target, the per-step discount factor a baseline gets).

    - ``episode``: Φ_t = G(τ) = Σ_k γ^k r_k for every t of the episode (seed 004 Alg. 3.1, seed 001 Alg. 2);
    - ``reward_to_go``: Φ_t = Σ_{k≥t} γ^{k−t} r_k (relative) or Σ_{k≥t} γ^k r_k (absolute, seed 004 eq. 3.26,
      Alg. 3.2), the causality form (seed 001 §4.3.1).

    The value target is always the relative reward-to-go G_t (V(s_t) estimates it, seed 004 eq. 3.31); with the
    absolute convention a state baseline b(s_t) is scaled by γ^k like the return it is subtracted from. Pass
    ``bootstrap`` = V(final observation) on truncated steps (0 elsewhere) to continue returns cut by a time
    limit; terminated episodes are never bootstrapped.
    """
    target = reward_to_go(reward, done, gamma, bootstrap=bootstrap)
    if returns == "episode":
        return episode_return(reward, done, gamma, bootstrap=bootstrap), target, torch.ones_like(target)
    if returns != "reward_to_go":
        raise ValueError(f"unknown returns {returns!r}")
    if discounting == "absolute":
        scale = gamma ** episode_timestep(done).to(target.dtype)
        return target * scale, target, scale
    return target, target, torch.ones_like(target)


def policy_gradient_loss(logp: torch.Tensor, phi: torch.Tensor, mask: torch.Tensor,
                         normalizer: float | torch.Tensor) -> torch.Tensor:
    """−Σ_t log π_θ(a_t|s_t) · sg(Φ_t) / normalizer over the real steps (``mask``).

    With ``normalizer`` = the number of trajectories this is the seeds' estimator, a sum over time and a mean over
    trajectories, ĝ = (1/|D|) Σ_τ Σ_t ∇log π(a_t|s_t) Φ_t (seed 004 eq. 3.9, Algs 3.1–3.2; seed 001 Alg. 2; the
    surrogate U^PG of seed 003). With the number of steps it is a per-step mean, as TorchRL's ``ReinforceLoss``
    and SB3's A2C take it. Φ is detached: no gradient flows through returns, baselines or importance weights.
    """
    return -(logp * phi.detach() * mask).sum() / normalizer


def value_loss(value: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
               normalizer: float | torch.Tensor) -> torch.Tensor:
    """Σ (V(s_t) − G_t)² / normalizer over the real steps: the Monte-Carlo regression of seed 004 eq. 3.31 and
    seed 002's "refit the baseline" (pass the number of real steps for a mean)."""
    return ((value - target.detach()).pow(2) * mask).sum() / normalizer


def linear_surrogate(params: list[torch.Tensor], grads: list[torch.Tensor]) -> torch.Tensor:
    """−Σ_p ⟨p, sg(ĝ_p)⟩: a loss whose gradient is exactly −ĝ.

    It applies a gradient computed outside a single autograd pass (the optimal-baseline estimate, which needs
    per-trajectory gradients first) through the ordinary backward, so DDP's gradient averaging, gradient
    clipping and precision plugins handle it like any other loss.
    """
    return -sum((p * g.detach().to(p.dtype)).sum() for p, g in zip(params, grads, strict=True))  # type: ignore[return-value]


def masked_moments(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Σ x, Σ x², count) over the masked entries: sums, so that ranks can add theirs before dividing."""
    m = mask.to(x.dtype)
    return (x * m).sum(), (x * x * m).sum(), m.sum()
