"""TD errors, discounted returns and GAE over a time-last rollout ``[..., T]``.

Conventions (Rossi §3.4, ch. 5):
- ``next_value[..., t]`` is V of the observation that followed step t: the true final observation when the
  episode ended there (not the auto-reset one).
- ``terminated`` zeroes the bootstrap: the episode really ended, its future is worth 0.
- ``done = terminated | truncated`` stops accumulation across episode boundaries. A truncated step (time
  limit) still bootstraps from V(final observation) through ``next_value``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def td_error(reward: torch.Tensor, value: torch.Tensor, next_value: torch.Tensor,
             terminated: torch.Tensor, gamma: float) -> torch.Tensor:
    """δ_t = r_t + γ (1 − terminated_t) V(s_{t+1}) − V(s_t)."""
    return reward + gamma * next_value * (~terminated).to(reward.dtype) - value


def gae(reward: torch.Tensor, value: torch.Tensor, next_value: torch.Tensor, terminated: torch.Tensor,
        done: torch.Tensor, gamma: float, lam: float) -> torch.Tensor:
    """Generalised advantage estimate Â_t = Σ_l (γλ)^l δ_{t+l} within an episode (Rossi eq. 5.6–5.7).

    λ = 0 gives δ_t; λ = 1 gives the bootstrapped discounted return minus V(s_t). Computed in float32.
    """
    delta = td_error(reward.float(), value.float(), next_value.float(), terminated, gamma)
    keep = (~done).float() * (gamma * lam)
    adv = torch.empty_like(delta)
    last = torch.zeros_like(delta[..., 0])
    for t in range(delta.shape[-1] - 1, -1, -1):
        last = delta[..., t] + keep[..., t] * last
        adv[..., t] = last
    return adv


def discounted_returns(reward: torch.Tensor, done: torch.Tensor, gamma: float,
                       bootstrap: torch.Tensor | None = None) -> torch.Tensor:
    """Reward-to-go G_t = Σ_{k≥t} γ^{k−t} r_k within an episode (Rossi eq. 3.28, relative exponent).

    The sum is cut after a ``done`` step and after the rollout's last step; there ``bootstrap[..., t]`` (default
    0) stands in for the rest: pass V of the next observation on truncated steps and at the rollout end, and 0
    on terminated steps.
    """
    cut = done.clone()
    cut[..., -1] = True
    boot = torch.zeros_like(reward, dtype=torch.float32) if bootstrap is None else bootstrap.float()
    out = torch.empty_like(reward, dtype=torch.float32)
    running = torch.zeros_like(reward[..., 0], dtype=torch.float32)
    for t in range(reward.shape[-1] - 1, -1, -1):
        running = reward[..., t].float() + gamma * torch.where(cut[..., t], boot[..., t], running)
        out[..., t] = running
    return out


def explained_variance(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 − Var[target − prediction] / Var[target]: 1 for a perfect value function, ≤ 0 for a useless one."""
    return 1 - (target - prediction).var() / target.var().clamp_min(1e-8)


def annotate_gae(td: Any, value_fn: Callable[[torch.Tensor], torch.Tensor], gamma: float,
                 lam: float) -> torch.Tensor:
    """Write ``value``, ``advantage`` (GAE(γ, λ)) and ``value_target`` (= advantage + value) into an on-policy
    rollout TensorDict (``next`` holding reward, terminated, done and the true next observation); returns the
    value function's explained variance on it."""
    value, next_value = value_fn(td["observation"]), value_fn(td["next", "observation"])
    adv = gae(td["next", "reward"].squeeze(-1), value, next_value, td["next", "terminated"].squeeze(-1),
              td["next", "done"].squeeze(-1), gamma, lam)
    td.set("value", value)
    td.set("advantage", adv)
    td.set("value_target", adv + value)
    return explained_variance(value, adv + value)


def normalize_advantage(adv: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(Â − mean) / (std + eps) over the batch (unchanged when it holds fewer than two samples)."""
    if adv.numel() < 2:
        return adv
    return (adv - adv.mean()) / (adv.std() + eps)
