"""Ensembles of independent MLPs evaluated as one batched network (twin critics of TD3/SAC, n-critic ensembles).

The n members share the architecture, not the weights: each layer stacks the n weight matrices, so a forward pass
is one batched matmul per layer (``baddbmm``) instead of n separate networks, and one backward pass serves all
members. Fewer, larger kernels and autograd nodes: on small MLPs the per-op overhead is a large part of the cost.
Every member is initialised exactly like an ``nn.Linear`` of the same shape, so an ensemble of n starts from the
same distribution as n separate ``mlp`` networks.

``frozen=True`` evaluates the members with their parameters detached: gradients flow to the *inputs* only (SAC's
actor loss differentiates min_i Q_i(s, ã) through ã without touching the critics).
"""

from __future__ import annotations

import math
from itertools import pairwise

import torch
from torch import nn

from lrl.networks.mlp import ACTIVATIONS


class EnsembleLinear(nn.Module):
    """n independent linear layers: x [B, in] (shared by all members) or [n, B, in] → [n, B, out]."""

    def __init__(self, n: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.n, self.in_features, self.out_features = n, in_features, out_features
        self.weight = nn.Parameter(torch.empty(n, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(n, 1, out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Linear's default: kaiming_uniform(a=√5) on the weight and U(±1/√fan_in) on the bias, both U(±1/√fan_in)
        bound = 1.0 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        w, b = (self.weight.detach(), self.bias.detach()) if frozen else (self.weight, self.bias)
        if x.dim() == 2:  # the same input for every member: broadcast matmul [B, in] @ [n, in, out]
            return torch.matmul(x, w) + b
        return torch.baddbmm(b, x, w)

    def extra_repr(self) -> str:
        return f"n={self.n}, in_features={self.in_features}, out_features={self.out_features}"


class EnsembleMLP(nn.Module):
    """n MLPs of identical shape (``activation`` between layers, none after the output): [B, in] → [n, B, out]."""

    def __init__(self, n: int, in_dim: int, hidden: list[int], out_dim: int, activation: str = "relu") -> None:
        super().__init__()
        dims = [in_dim, *hidden, out_dim]
        self.layers = nn.ModuleList(EnsembleLinear(n, a, b) for a, b in pairwise(dims))
        self.act = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x, frozen)
            if i < len(self.layers) - 1:
                x = self.act(x)
        return x
