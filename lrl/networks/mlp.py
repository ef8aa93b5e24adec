"""MLP bodies and the actor-critic pair used by the policy-gradient family."""

from __future__ import annotations

import math

import torch
from torch import nn

from lrl.networks.encoders import make_encoder
from lrl.networks.heads import Params, PolicyHead, StochasticPolicy, make_policy_head
from lrl.spec import EnvSpec, Spec

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


def body(spec: Spec, hidden: list[int], activation: str = "tanh", encoder: str | None = None,
         out_dim: int | None = None) -> tuple[nn.Sequential, int]:
    """The layers between an observation and a head, built from the spec, and their output width:
    ``mlp(input_dim, hidden)`` on vector observations; on images (``obs_kind == "image"``) the CNN ``encoder``
    names (default ``nature``, :mod:`lrl.networks.encoders`), then ``mlp(encoder.out_dim, hidden)``. With
    ``out_dim``, a last linear layer of that width is included (a Q-network, a value net) and is the width."""
    if spec.obs_kind != "image":
        net, width = mlp(spec.input_dim, hidden, out_dim, activation), spec.input_dim
    else:
        enc = make_encoder(spec, encoder)
        net, width = nn.Sequential(enc, *mlp(enc.out_dim, hidden, out_dim, activation)), enc.out_dim
    return net, out_dim if out_dim is not None else (hidden[-1] if hidden else width)


def orthogonal_init(module: nn.Module, gain: float) -> None:
    for m in module.modules():
        if isinstance(m, nn.Linear | nn.Conv2d):
            nn.init.orthogonal_(m.weight, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class ActorCritic(StochasticPolicy):
    """Separate (default) or shared bodies (:func:`body`: an MLP, after a CNN on images) for a policy head and a
    state-value head.

    Orthogonal initialisation with gains √2 (hidden), 0.01 (policy output) and 1 (value output) is the
    PPO reference implementation's (Huang et al. 2022, "37 details" #2), so results compare with SB3.
    """

    def __init__(self, spec: EnvSpec, hidden: list[int], activation: str = "tanh", shared: bool = False,
                 log_std_init: float = 0.0, ortho_init: bool = True, encoder: str | None = None) -> None:
        super().__init__()
        self.actor_body, feat = body(spec, hidden, activation, encoder)
        self.critic_body = self.actor_body if shared else body(spec, hidden, activation, encoder)[0]
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
