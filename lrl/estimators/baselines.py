"""Baselines for Monte-Carlo policy gradients (Yin §4.3.2, Brunskill "Baseline", Rossi §3.5).

Any b that does not depend on the action at t leaves the policy gradient unbiased, since
E[∇log π(a_t|s_t) · b(s_t)] = 0 (EGLP lemma, Rossi eq. 3.11). The ones here:

- average: b = the batch mean of the returns (Yin: b = (1/N) Σ_i r(τ_i));
- optimal, per gradient component j (Yin §4.3.2): b*_j = E[g_j(τ)² r(τ)] / E[g_j(τ)²], g(τ) = ∇_θ log p_θ(τ)
  = Σ_t ∇_θ log π_θ(a_t|s_t). In control-variate form, for any per-trajectory estimate X(τ) of the gradient and
  the zero-mean Y(τ) = g(τ), b*_j = E[X_j Y_j] / E[Y_j²] minimises Var(X_j − b_j Y_j); with X = g·r(τ) this is
  exactly the seed's formula, and with X = Σ_t ∇log π_t G_t it is the same idea for rewards-to-go;
- a learned state value V(s_t) lives in the algorithm module (it is a network), not here.

Per-trajectory score gradients come from ``torch.func`` (per-step gradients by ``vmap(grad)`` in chunks, summed
per episode with ``index_add``), so memory stays at one chunk × number of parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch.func import grad, vmap


def average_baseline(values: torch.Tensor, weight: torch.Tensor | None = None,
                     reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Σ w·v / Σ w: the mean return over the entries with weight (e.g. episode starts: mean over trajectories).
    ``reduce`` (e.g. an all-reduce sum over ranks) is applied to both sums before dividing."""
    w = torch.ones_like(values) if weight is None else weight.to(values.dtype)
    sums = torch.stack([(values * w).sum(), w.sum()])
    num, den = reduce(sums) if reduce is not None else sums
    return num / den.clamp_min(1e-12)


def optimal_baseline(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None,
                     reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """b*_j = Σ_i w_i x_ij y_ij / Σ_i w_i y_ij² for ``x, y`` of shape [trajectories, components].

    With sample weights 1 this is the sample version of Yin's E[g² r]/E[g²] (pass x = g·r, y = g); with
    ``weight`` = exact trajectory probabilities it is the exact expectation (what the unit test enumerates).
    ``reduce`` (e.g. an all-reduce sum over ranks) is applied to both sums before dividing, so several processes
    get the baseline of all their trajectories together. Components whose Σ y² is 0 get b = 0.
    """
    w = torch.ones(x.shape[0], dtype=x.dtype, device=x.device) if weight is None else weight.to(x.dtype)
    sums = torch.stack([(w[:, None] * x * y).sum(0), (w[:, None] * y * y).sum(0)])
    num, den = reduce(sums) if reduce is not None else sums
    return torch.where(den > 0, num / den.clamp_min(1e-30), torch.zeros_like(num))


LogProbFn = Callable[[dict[str, torch.Tensor], torch.Tensor, torch.Tensor], torch.Tensor]


def trajectory_scores(log_prob: LogProbFn, params: Mapping[str, torch.Tensor], obs: torch.Tensor,
                      action: torch.Tensor, phi: torch.Tensor, episode: torch.Tensor, weight: torch.Tensor,
                      num_episodes: int, chunk_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-trajectory Y_i = Σ_{t∈τ_i} ∇_θ log π(a_t|s_t) and X_i = Σ_{t∈τ_i} ∇_θ log π(a_t|s_t) · φ_t.

    Args:
        log_prob: ``(params, obs[B, ...], action[B, ...]) -> log π [B]``, a pure function of ``params``
            (e.g. ``torch.func.functional_call`` of the policy).
        params: the parameters to differentiate, by name; the result's columns follow their order, flattened.
        obs, action, phi, episode, weight: per step (flat [S, ...]); ``episode`` in [0, num_episodes) says which
            trajectory a step belongs to; ``weight`` (0 on padding) multiplies each step's gradient.
    Returns:
        (Y, X), each [num_episodes, number of parameters], float32.
    """
    detached = {k: v.detach() for k, v in params.items()}
    size = sum(v.numel() for v in detached.values())

    def one(p: dict[str, torch.Tensor], o: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return log_prob(p, o.unsqueeze(0), a.unsqueeze(0)).squeeze(0)

    per_step = vmap(grad(one), in_dims=(None, 0, 0))
    y = torch.zeros(num_episodes, size, device=obs.device)
    x = torch.zeros(num_episodes, size, device=obs.device)
    for start in range(0, obs.shape[0], chunk_size):
        sl = slice(start, start + chunk_size)
        g = per_step(detached, obs[sl], action[sl])
        flat = torch.cat([g[k].reshape(g[k].shape[0], -1).float() for k in detached], 1)
        w = weight[sl].float()[:, None]
        y.index_add_(0, episode[sl], flat * w)
        x.index_add_(0, episode[sl], flat * (w * phi[sl].float()[:, None]))
    return y, x
