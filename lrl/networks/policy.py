"""A stand-alone policy network (no critic) and the sampling module collectors call.

Monte-Carlo policy gradients (REINFORCE, off-policy PG) need a policy without a value head, a value network only
when a learned baseline is asked for, and, for off-policy learning, a second frozen copy of the policy.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lrl.networks.heads import Params, PolicyHead, StochasticPolicy, make_policy_head
from lrl.networks.mlp import body, orthogonal_init
from lrl.spec import EnvSpec


class PolicyNet(StochasticPolicy):
    """MLP body + policy head (Rossi §3.1: softmax over |A| logits, or a diagonal Gaussian with a learned
    log-std). ``forward(obs)`` returns the head's distribution parameters."""

    def __init__(self, spec: EnvSpec, hidden: list[int], activation: str = "tanh", log_std_init: float = 0.0,
                 ortho_init: bool = True, encoder: str | None = None) -> None:
        super().__init__()
        self.body, feat = body(spec, hidden, activation, encoder)
        self.head: PolicyHead = make_policy_head(spec, feat, log_std_init)
        if ortho_init:  # as ActorCritic: √2 hidden, 0.01 on the output (near-uniform initial policy)
            orthogonal_init(self.body, math.sqrt(2))
            orthogonal_init(self.head, 0.01)

    def forward(self, obs: torch.Tensor) -> Params:  # type: ignore[override]
        return self.head(self.body(obs))

    def policy_body(self) -> nn.Module:
        return self.body


def value_net(spec: EnvSpec, hidden: list[int], activation: str = "tanh", ortho_init: bool = True,
              encoder: str | None = None) -> nn.Sequential:
    """V(s): an MLP with one output, after a CNN on images (orthogonal init, gain 1 on the output layer, when
    ``ortho_init``)."""
    net = body(spec, hidden, activation, encoder, out_dim=1)[0]
    if ortho_init:
        orthogonal_init(net[:-1], math.sqrt(2))
        orthogonal_init(net[-1], 1.0)
    return net


class SamplingPolicy(nn.Module):
    """The collection policy of a :class:`StochasticPolicy` (an :class:`ActorCritic`, a :class:`PolicyNet`):
    ``(obs, generator) -> {"action", "sample_log_prob"}`` (docs/contract.md)."""

    def __init__(self, net: StochasticPolicy) -> None:
        super().__init__()
        self.net = net

    def forward(self, obs: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        params = self.net.policy_params(obs)
        action = self.net.head.sample(params, generator)
        return {"action": action, "sample_log_prob": self.net.head.log_prob(params, action)}
