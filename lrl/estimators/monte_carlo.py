"""Monte-Carlo returns and baselines of a complete-episode rollout ``[N, T]`` (REINFORCE and off-policy PG; Rossi
ch. 3, Yin ch. 4, Atreya §2), computed once per rollout without gradients, with sums over ranks.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.distributed as dist

from lrl.estimators.baselines import average_baseline
from lrl.estimators.returns import Discounting, episode_return, episode_starts, episode_timestep, reward_to_go

Returns = Literal["reward_to_go", "episode"]
Baseline = Literal["none", "average", "optimal", "value"]


def monte_carlo_returns(reward: torch.Tensor, done: torch.Tensor, gamma: float, *, returns: Returns,
                        discounting: Discounting, bootstrap: torch.Tensor | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Φ before any baseline, the value-regression target, the per-step discount factor a baseline gets).

    - ``episode``: Φ_t = G(τ) = Σ_k γ^k r_k for every t of the episode (Rossi Alg. 3.1, Yin Alg. 2);
    - ``reward_to_go``: Φ_t = Σ_{k≥t} γ^{k−t} r_k (relative) or Σ_{k≥t} γ^k r_k (absolute, Rossi eq. 3.26,
      Alg. 3.2), the causality form (Yin §4.3.1).

    The value target is always the relative reward-to-go G_t (V(s_t) estimates it, Rossi eq. 3.31); with the
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


def masked_moments(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Σ x, Σ x², count) over the masked entries: sums, so that ranks can add theirs before dividing."""
    m = mask.to(x.dtype)
    return (x * m).sum(), (x * x * m).sum(), m.sum()


def all_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (identity on one process); every rank gets the result."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        x = x.clone()
        dist.all_reduce(x)
    return x


def annotate_returns(td: Any, *, gamma: float, returns: Returns, discounting: Discounting, baseline: Baseline,
                     value: torch.Tensor | None, next_value: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Set ``returns`` (Φ before a baseline), ``baseline`` (b_t, scaled like Φ), ``value_target`` and
    ``bootstrap`` (the value continuing a truncated return, else 0) on a complete-episode rollout ``td`` of shape
    [N, T]; return statistics to record.

    ``next_value`` (V of the true final observation) is used on truncated steps only: a time limit cuts the
    return, so it continues with V; a termination does not. Averages are over all ranks.
    """
    mask = td["mask"]
    done = td["next", "done"].squeeze(-1)
    boot = None
    if next_value is not None:
        cut = td["next", "truncated"].squeeze(-1) & ~td["next", "terminated"].squeeze(-1)
        boot = next_value * cut
    phi, target, scale = monte_carlo_returns(td["next", "reward"].squeeze(-1), done, gamma, returns=returns,
                                             discounting=discounting, bootstrap=boot)
    stats: dict[str, torch.Tensor] = {}
    b = torch.zeros_like(phi)
    if baseline == "value" and value is not None:
        b = value * scale
        s, s2, n = (all_sum(t) for t in masked_moments(target - value, mask))
        t_s, t_s2, _ = (all_sum(t) for t in masked_moments(target, mask))
        var_target = t_s2 / n - (t_s / n) ** 2
        stats["stats/explained_variance"] = 1 - (s2 / n - (s / n) ** 2) / var_target.clamp_min(1e-8)
    elif baseline == "average":  # mean over trajectories for G(τ), over steps for rewards-to-go (Yin §4.3.2)
        where = mask & episode_starts(done) if returns == "episode" else mask
        mean = average_baseline(phi, where, reduce=all_sum)
        b = torch.zeros_like(phi) + mean
        stats["stats/baseline"] = mean
    td.set("returns", phi)
    td.set("baseline", b)
    td.set("value_target", target)
    td.set("bootstrap", boot if boot is not None else torch.zeros_like(phi))
    return stats


def global_counts(td: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(trajectories, real steps) of this rollout summed over ranks."""
    mask = td["mask"]
    ends = mask & td["next", "done"].squeeze(-1)
    return all_sum(ends.sum().float()), all_sum(mask.sum().float())
