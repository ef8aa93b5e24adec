"""Monte-Carlo returns and per-episode segment operations over a time-last rollout ``[..., T]``.

Layout (Rossi §3.3, Yin §4.3.1): ``done[..., t]`` is True when step t is the last step of its episode
(terminated, truncated, or padding of a complete-episode rollout, which is marked done). Every row is taken to
*start* an episode at t = 0: complete-episode rollouts (``data.complete_episodes``) guarantee it. A flat vector
of several rows concatenated row-major also qualifies when every row ends with ``done`` (complete-episode
rollouts end every row with a done step), so the same functions work on ``[N, T]`` and on ``[N·T]``.

Discount conventions:
- ``relative`` (default; Rossi eq. 3.28, Brunskill "Return G_t", GAE): G_t = Σ_{k≥t} γ^{k−t} r_k.
- ``absolute`` (seed-exact for Rossi eq. 3.15/3.26 and Algs 3.2–8.1): G_t = Σ_{k≥t} γ^k r_k, with k the
  time index *within the episode*, so G_t^abs = γ^t · G_t^rel. The two agree when γ = 1.
"""

from __future__ import annotations

from typing import Literal

import torch

from lrl.estimators.advantages import discounted_returns

Discounting = Literal["relative", "absolute"]


def episode_starts(done: torch.Tensor) -> torch.Tensor:
    """True at the first step of each episode: t = 0 and every step after a ``done``."""
    start = torch.ones_like(done, dtype=torch.bool)
    start[..., 1:] = done[..., :-1]
    return start


def _last_start(done: torch.Tensor) -> torch.Tensor:
    """Index (along T) of the first step of the episode each step belongs to."""
    ar = torch.arange(done.shape[-1], device=done.device).expand_as(done)
    return torch.where(episode_starts(done), ar, torch.zeros_like(ar)).cummax(-1).values


def _next_end(done: torch.Tensor) -> torch.Tensor:
    """Index (along T) of the last step of the episode each step belongs to (the rollout end cuts too)."""
    t = done.shape[-1]
    end = done.clone()
    end[..., -1] = True
    ar = torch.arange(t, device=done.device).expand_as(done)
    flipped = torch.where(end.flip(-1), ar, torch.zeros_like(ar)).cummax(-1).values
    return (t - 1) - flipped.flip(-1)


def episode_timestep(done: torch.Tensor) -> torch.Tensor:
    """k_t: the time index of each step within its own episode (0 at the episode's first step)."""
    ar = torch.arange(done.shape[-1], device=done.device).expand_as(done)
    return ar - _last_start(done)


def episode_index(done: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """0, 1, 2, ... for the episodes of a 1-D rollout in order; with ``mask``, only masked-in episodes count and
    padding steps carry the index of the episode before them (their weight is 0 wherever the index is used)."""
    if done.dim() != 1:
        raise ValueError("episode_index expects a flat [T] rollout")
    start = episode_starts(done)
    if mask is not None:
        start = start & mask
    return (start.long().cumsum(0) - 1).clamp_min(0)


def episode_cumsum(x: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
    """Σ_{t' ≤ t, same episode} x_{t'} (inclusive running sum restarted at every episode start), in float64."""
    c = x.double().cumsum(-1)
    c0 = torch.cat([torch.zeros_like(c[..., :1]), c], -1)  # c0[j] = Σ_{i<j} x_i
    return c - c0.gather(-1, _last_start(done))


def episode_sum(x: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
    """Σ of x over each step's whole episode, broadcast to every step of it, in float64."""
    c0 = torch.cat([torch.zeros_like(x[..., :1], dtype=torch.float64), x.double().cumsum(-1)], -1)
    return c0.gather(-1, _next_end(done) + 1) - c0.gather(-1, _last_start(done))


def reward_to_go(reward: torch.Tensor, done: torch.Tensor, gamma: float, *,
                 discounting: Discounting = "relative", bootstrap: torch.Tensor | None = None) -> torch.Tensor:
    """G_t = Σ_{k=t}^{end} γ^{k−t} r_k (relative) or Σ γ^k r_k (absolute, k within the episode).

    Causality (Rossi eq. 3.25–3.26, Yin §4.3.1): only rewards from t on. The sum stops at the episode's
    last step; ``bootstrap[..., t]`` is added there discounted like a reward at t+1 (pass V(final observation)
    on truncated steps, 0 on terminated ones and on padding).
    """
    out = discounted_returns(reward, done, gamma, bootstrap=bootstrap)
    if discounting == "absolute":
        out = out * gamma ** episode_timestep(done).to(out.dtype)
    elif discounting != "relative":
        raise ValueError(f"unknown discounting {discounting!r}")
    return out


def episode_return(reward: torch.Tensor, done: torch.Tensor, gamma: float,
                   bootstrap: torch.Tensor | None = None) -> torch.Tensor:
    """The whole-trajectory return G(τ) = Σ_t γ^t r_t (Rossi eq. 3.8–3.9, Yin r(τ)), broadcast to every
    step of its episode. Both discount conventions give the same G(τ), since the episode starts at k = 0."""
    rtg = discounted_returns(reward, done, gamma, bootstrap=bootstrap)
    return rtg.gather(-1, _last_start(done))
