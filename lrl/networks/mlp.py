"""MLP bodies and the actor-critic pair used by the policy-gradient family."""

from __future__ import annotations

import math

import torch
from torch import nn

from lrl.networks.heads import Params, PolicyHead, StochasticPolicy, make_policy_head
from lrl.spec import EnvSpec

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU}


def mlp(in_dim: int, hidden: list[int], out_dim: int | None, activation: str = "tanh") -> nn.Sequential:
    """Linear layers with ``activation`` between them; no activation after the output layer."""
    layers: list[nn.Module] = []
    last = in_dim
    for h in hidden:
        layers += [nn.Linear(last, h), ACTIVATIONS[activation]()]
        last = h
    if out_dim is not None:
        layers.append(nn.Linear(last, out_dim))
    return nn.Sequential(*layers)


def orthogonal_init(module: nn.Module, gain: float) -> None:
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.orthogonal_(m.weight, gain)
            nn.init.zeros_(m.bias)


class ActorCritic(StochasticPolicy):
    """Separate (default) or shared MLP bodies for a policy head and a state-value head.

    Orthogonal initialisation with gains √2 (hidden), 0.01 (policy output) and 1 (value output) is the
    PPO reference implementation's (Huang et al. 2022, "37 details" #2), so results compare with SB3.
    """

    def __init__(self, spec: EnvSpec, hidden: list[int], activation: str = "tanh", shared: bool = False,
                 log_std_init: float = 0.0, ortho_init: bool = True) -> None:
        super().__init__()
        feat = hidden[-1] if hidden else spec.input_dim
        self.actor_body = mlp(spec.input_dim, hidden, None, activation)
        self.critic_body = self.actor_body if shared else mlp(spec.input_dim, hidden, None, activation)
        self.head: PolicyHead = make_policy_head(spec, feat, log_std_init)
        self.value_out = nn.Linear(feat, 1)
        if ortho_init:
            orthogonal_init(self.actor_body, math.sqrt(2))
            if not shared:
                orthogonal_init(self.critic_body, math.sqrt(2))
            orthogonal_init(self.head, 0.01)
            orthogonal_init(self.value_out, 1.0)

    def policy_params(self, obs: torch.Tensor) -> Params:
        return self.head(self.actor_body(obs))

    def policy_body(self) -> nn.Module:
        """The actor's body; with ``shared=True`` also the critic's, so a policy loaded into it moves V's features."""
        return self.actor_body

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.value_out(self.critic_body(obs)).squeeze(-1).float()
