"""Policy heads: the distribution an action is drawn from, as explicit tensors.

A head maps features to distribution parameters; every other method is a pure function of those parameters,
computed in float32 even under bf16 autocast (log-prob differences are what PPO's ratio is made of).
Discrete: softmax over |A| logits (seed 004 §3.1). Continuous: diagonal Gaussian with a state-independent,
learned log-std (seed 004 §3.1: "output it as log-std"; App. A.1 for the KL of diagonal Gaussians).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lrl.data.env import EnvSpec

Params = tuple[torch.Tensor, ...]


class PolicyHead(nn.Module):
    def forward(self, features: torch.Tensor) -> Params:  # type: ignore[override]
        raise NotImplementedError

    def log_prob(self, params: Params, action: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def entropy(self, params: Params) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, params: Params, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    def mode(self, params: Params) -> torch.Tensor:
        raise NotImplementedError

    def kl(self, old: Params, new: Params) -> torch.Tensor:
        """KL(old || new) per sample, in closed form."""
        raise NotImplementedError


class CategoricalHead(PolicyHead):
    def __init__(self, in_dim: int, n: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, n)

    def forward(self, features: torch.Tensor) -> Params:  # type: ignore[override]
        return (torch.log_softmax(self.linear(features).float(), dim=-1),)

    def log_prob(self, params: Params, action: torch.Tensor) -> torch.Tensor:
        return params[0].gather(-1, action.long().unsqueeze(-1)).squeeze(-1)

    def entropy(self, params: Params) -> torch.Tensor:
        logp = params[0]
        return -(logp.exp() * logp).sum(-1)

    def sample(self, params: Params, generator: torch.Generator | None = None) -> torch.Tensor:
        # Gumbel-max: argmax(logits + Gumbel) is an exact categorical sample, ~10x cheaper than
        # torch.distributions.Categorical at small batch sizes (DESIGN.md §4).
        noise = torch.empty_like(params[0]).exponential_(generator=generator).log()
        return (params[0] - noise).argmax(-1)

    def mode(self, params: Params) -> torch.Tensor:
        return params[0].argmax(-1)

    def kl(self, old: Params, new: Params) -> torch.Tensor:
        return (old[0].exp() * (old[0] - new[0])).sum(-1)


class GaussianHead(PolicyHead):
    def __init__(self, in_dim: int, action_dim: int, log_std_init: float = 0.0) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, action_dim)
        self.log_std = nn.Parameter(torch.full((action_dim,), float(log_std_init)))

    def forward(self, features: torch.Tensor) -> Params:  # type: ignore[override]
        mean = self.linear(features).float()
        return mean, self.log_std.float().expand_as(mean)

    def log_prob(self, params: Params, action: torch.Tensor) -> torch.Tensor:
        mean, log_std = params
        z = (action - mean) * torch.exp(-log_std)
        return (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    def entropy(self, params: Params) -> torch.Tensor:
        # seed 004 eq. A.9: H = ½ log(2πe σ²) per dimension
        return (params[1] + 0.5 * math.log(2 * math.pi * math.e)).sum(-1)

    def sample(self, params: Params, generator: torch.Generator | None = None) -> torch.Tensor:
        mean, log_std = params
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + log_std.exp() * noise

    def mode(self, params: Params) -> torch.Tensor:
        return params[0]

    def kl(self, old: Params, new: Params) -> torch.Tensor:
        (m0, s0), (m1, s1) = old, new
        return (s1 - s0 + (torch.exp(2 * s0) + (m0 - m1) ** 2) / (2 * torch.exp(2 * s1)) - 0.5).sum(-1)


def make_policy_head(spec: EnvSpec, in_dim: int, log_std_init: float = 0.0) -> PolicyHead:
    if spec.action_kind == "discrete":
        return CategoricalHead(in_dim, spec.action_dim)
    return GaussianHead(in_dim, spec.action_dim, log_std_init)
