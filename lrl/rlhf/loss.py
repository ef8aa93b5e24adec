"""Pure losses of learning from preferences (Rossi eq. 14.5-14.7, Christiano et al. 2017; docs/rlhf.md).

A segment σ = (s_0, a_0, ..., s_{k-1}, a_{k-1}) has predicted return R̂(σ) = Σ_t r̂(s_t, a_t). The Bradley-Terry
model gives P̂(σ1 ≻ σ2) = exp R̂1 / (exp R̂1 + exp R̂2) = sigmoid(R̂1 − R̂2), and a label μ = (μ1, μ2) (left (1, 0),
right (0, 1), equal (½, ½); "skip" is discarded before it gets here) costs
−[μ1 log P̂(σ1 ≻ σ2) + μ2 log P̂(σ2 ≻ σ1)] = BCE-with-logits(R̂1 − R̂2, μ1), since μ1 + μ2 = 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def segment_returns(rewards: torch.Tensor) -> torch.Tensor:
    """R̂ = Σ_t r̂_t over the last (time) dimension: ``[..., k] -> [...]``."""
    return rewards.sum(-1)


def preference_prob(ret1: torch.Tensor, ret2: torch.Tensor) -> torch.Tensor:
    """P̂(σ1 ≻ σ2) = sigmoid(R̂1 − R̂2) (eq. 14.6)."""
    return torch.sigmoid(ret1 - ret2)


def bradley_terry_loss(ret1: torch.Tensor, ret2: torch.Tensor, mu1: torch.Tensor,
                       reduction: str = "mean") -> torch.Tensor:
    """Eq. 14.7 per pair, −[μ1 log P̂(σ1≻σ2) + (1 − μ1) log P̂(σ2≻σ1)], as a numerically stable BCE with logits."""
    return F.binary_cross_entropy_with_logits(ret1 - ret2, mu1.to(ret1.dtype), reduction=reduction)


def disagreement(ret1: torch.Tensor, ret2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """How much an ensemble disagrees on pairs: ``ret1``, ``ret2`` are ``[members, pairs]`` predicted returns.

    Returns (the fraction of members that disagree with the majority's preferred segment, in [0, ½]; the variance
    over members of P̂(σ1 ≻ σ2)). Queries are ranked by the first, ties broken by the second."""
    votes = (ret1 > ret2).float().mean(0)
    minority = torch.minimum(votes, 1 - votes)
    var = preference_prob(ret1, ret2).var(0, unbiased=False)
    return minority, var
