"""Loss forms that more than one algorithm minimises, as pure functions of explicit tensors. Losses are minimised,
so policy-gradient surrogates enter with a minus sign; targets, returns and advantages carry no gradient.

- :func:`value_loss`: the critic's squared error (PPO, A2C, TRPO/NPG, KL-PPO), optionally value-clipped;
- :func:`surrogate`: the importance-sampled surrogate E[r·Â] (TRPO/NPG, KL-PPO; Rossi eq. 7.41);
- :func:`policy_gradient_loss`, :func:`masked_value_loss`: the Monte-Carlo policy gradient and its value fit over
  the real steps of a complete-episode rollout (REINFORCE, off-policy PG);
- :func:`td_loss`: Q-learning's Huber or squared TD error (DQN, SARSA);
- :func:`q_regression_loss`, :func:`deterministic_actor_loss`: the deterministic actor-critics' critic and actor
  losses (DDPG, TD3; Rossi ch. 9-10).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F


def value_loss(value: torch.Tensor, target: torch.Tensor, old_value: torch.Tensor | None = None,
               clip_range_vf: float | None = None) -> torch.Tensor:
    """E[(V − target)²] (no ½, as in Stable-Baselines3, so ``vf_coef`` means the same), or with value
    clipping (PPO2) the mean of the larger of the clipped and unclipped squared errors.

    [NOT IN SEEDS: value clipping; it is the reference implementation's option.]
    """
    if clip_range_vf is None or old_value is None:
        return (value - target).pow(2).mean()
    clipped = old_value + (value - old_value).clamp(-clip_range_vf, clip_range_vf)
    return torch.maximum((value - target).pow(2), (clipped - target).pow(2)).mean()


def surrogate(logp: torch.Tensor, old_logp: torch.Tensor, advantage: torch.Tensor) -> torch.Tensor:
    """L = mean(exp(logp − sg(logp_old)) · Â) (Rossi eq. 7.41). At θ' = θ its gradient is the vanilla PG
    mean(∇logπ · Â) (eq. 7.39): the old log-probs carry no gradient."""
    return (torch.exp(logp - old_logp.detach()) * advantage).mean()


def policy_gradient_loss(logp: torch.Tensor, phi: torch.Tensor, mask: torch.Tensor,
                         normalizer: float | torch.Tensor) -> torch.Tensor:
    """−Σ_t log π_θ(a_t|s_t) · sg(Φ_t) / normalizer over the real steps (``mask``).

    With ``normalizer`` = the number of trajectories this is the seeds' estimator, a sum over time and a mean over
    trajectories, ĝ = (1/|D|) Σ_τ Σ_t ∇log π(a_t|s_t) Φ_t (Rossi eq. 3.9, Algs 3.1–3.2; Yin Alg. 2; the
    surrogate U^PG of Fragkiadaki). With the number of steps it is a per-step mean, as TorchRL's ``ReinforceLoss``
    and SB3's A2C take it. Φ is detached: no gradient flows through returns, baselines or importance weights.
    """
    return -(logp * phi.detach() * mask).sum() / normalizer


def masked_value_loss(value: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                      normalizer: float | torch.Tensor) -> torch.Tensor:
    """Σ (V(s_t) − G_t)² / normalizer over the real steps: the Monte-Carlo regression of Rossi eq. 3.31 and
    Brunskill's "refit the baseline" (pass the number of real steps for a mean)."""
    return ((value - target.detach()).pow(2) * mask).sum() / normalizer


def td_loss(q_taken: torch.Tensor, target: torch.Tensor, kind: Literal["huber", "mse"] = "huber") -> torch.Tensor:
    """Mean Huber (δ = 1, as SB3 and the DQN paper's error clipping) or squared error between Q(s, a) and y.

    The seed's loss is the squared error (eq. 2.5); its gradient −2(y − Q)∇Q has the factor 2 that the step size
    absorbs. ``target`` must not carry gradients (semi-gradient TD, Rossi §2.1).
    """
    q_taken = q_taken.float()
    if kind == "huber":
        return F.smooth_l1_loss(q_taken, target)
    return (q_taken - target).pow(2).mean()


def q_regression_loss(q: torch.Tensor, target: torch.Tensor, kind: Literal["mse", "huber"] = "mse") -> torch.Tensor:
    """Σ over critics of the mean squared (or Huber, δ = 1) error; ``q`` is ``[n, B]``, ``target`` ``[B]``.

    Every critic regresses to the same ``target`` (TD3: "both networks go through a q-learning step using the same
    target value", Rossi §10.2). The target must carry no gradient.
    """
    q = q.float()
    y = target.expand_as(q)
    per_critic = F.mse_loss(q, y, reduction="none") if kind == "mse" else F.smooth_l1_loss(q, y, reduction="none")
    return per_critic.mean(-1).sum()


def deterministic_actor_loss(q_of_policy_action: torch.Tensor) -> torch.Tensor:
    """−mean Q(s, μ_θ(s)): descending it ascends the deterministic policy gradient ∇_θ μ_θ(s) ∇_a Q(s, a)|a=μ(s)
    (Rossi eq. 9.10; "it could just have been written as ∇_θ Q_ψ(s, μ_θ(s))", §9.6)."""
    return -q_of_policy_action.float().mean()
