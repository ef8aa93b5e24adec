"""Target networks: hard copies and Polyak averaging (Rossi §2.5-2.6, eq. 2.8).

Convention: ``tau`` is the weight of the *online* network, θ' ← τ θ + (1 − τ) θ'. The seed writes the same update
with ς = 1 − τ, the weight of the old target ("a good value is ς = 0.99", i.e. τ = 0.01).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def make_target(net: nn.Module) -> nn.Module:
    """A frozen copy of ``net`` (no gradients; it follows ``net`` through the updates below)."""
    target = copy.deepcopy(net)
    target.requires_grad_(False)
    return target


@torch.no_grad()
def polyak_update_(target: nn.Module, online: nn.Module, tau: float) -> None:
    """θ' ← τ θ + (1 − τ) θ' for every parameter; buffers (e.g. normalisation statistics) are copied."""
    t_params: list[torch.Tensor] = list(target.parameters())
    o_params: list[torch.Tensor] = list(online.parameters())
    torch._foreach_lerp_(t_params, o_params, tau)
    for tb, ob in zip(target.buffers(), online.buffers(), strict=True):
        tb.copy_(ob)


@torch.no_grad()
def hard_update_(target: nn.Module, online: nn.Module) -> None:
    """θ' ← θ (Rossi Alg. 2.2: at the start of each outer loop)."""
    for t, o in zip(target.state_dict().values(), online.state_dict().values(), strict=True):
        t.copy_(o)
