"""Deterministic actor, Q critics and exploration noise for the deterministic actor-critics (DDPG, TD3).

* :class:`DeterministicActor` μ_θ(s) = c + h · tanh(f_θ(s)), with c and h the centre and half-range of the action
  box: a deterministic policy whose actions always lie inside the bounds (Rossi §9.1, §9.6).
* :class:`QCritics` n independent action-value networks Q_ψi(s, a) = f_ψi([s, a]) (n = 1 for DDPG, the twin
  critics of TD3 with n = 2, Rossi §10.2), evaluated together, ``[n, B]`` out.
* Exploration on the *collection* actions only (Rossi §9.6: the behaviour policy is μ_θ(s) + noise):
  :class:`GaussianNoise` (the default, "gaussian noise seems to work even better") or
  :class:`OrnsteinUhlenbeckNoise` (Lillicrap et al. 2016), whose per-env state is reset at episode ends and saved
  with the collector. :class:`NoisyDeterministicPolicy` is the collection policy: it returns the noisy action
  already clipped to the bounds, so the replay buffer stores the action the env applied.

Noise standard deviations are fractions of the half-range h (Fujimoto et al. 2018 scale them by ``max_action``;
SB3 adds them in its [-1, 1]-scaled action space): σ = 0.1 means 0.2 on Pendulum's [-2, 2].
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from lrl.networks.mlp import mlp
from lrl.networks.target import make_target, polyak_update_
from lrl.spec import EnvSpec


def action_box(spec: EnvSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high) of a continuous action space as float32 tensors."""
    if spec.action_kind != "continuous" or spec.action_low is None or spec.action_high is None:
        raise ValueError(f"{spec.id}: a deterministic actor needs a bounded continuous action space")
    return torch.tensor(spec.action_low, dtype=torch.float32), torch.tensor(spec.action_high, dtype=torch.float32)


class DeterministicActor(nn.Module):
    """μ_θ(s) = c + h · tanh(f_θ(s)), always within [low, high]; float32 out (also under bf16 autocast)."""

    low: torch.Tensor
    high: torch.Tensor
    action_centre: torch.Tensor
    action_scale: torch.Tensor

    def __init__(self, spec: EnvSpec, hidden: list[int], activation: str = "relu") -> None:
        super().__init__()
        low, high = action_box(spec)
        self.net = mlp(spec.input_dim, hidden, spec.action_dim, activation)
        # derived from the env spec, so not part of the state dict
        self.register_buffer("low", low, persistent=False)
        self.register_buffer("high", high, persistent=False)
        self.register_buffer("action_centre", (high + low) / 2, persistent=False)
        self.register_buffer("action_scale", (high - low) / 2, persistent=False)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.action_centre + self.action_scale * torch.tanh(self.net(obs).float())


class QCritics(nn.Module):
    """n independent Q networks on the concatenation [s, a]; ``forward`` gives ``[n, B]`` (float32)."""

    def __init__(self, spec: EnvSpec, hidden: list[int], activation: str = "relu", n: int = 1) -> None:
        super().__init__()
        self.nets = nn.ModuleList(mlp(spec.input_dim + spec.action_dim, hidden, 1, activation) for _ in range(n))

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs, action.to(obs.dtype)], -1)
        return torch.stack([net(x).squeeze(-1).float() for net in self.nets])

    def q1(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """The first critic alone, ``[B]``: what the actor climbs (TD3: "only the first q-network", §10.4)."""
        return self.nets[0](torch.cat([obs, action.to(obs.dtype)], -1)).squeeze(-1).float()


# --- exploration noise ------------------------------------------------------------------------------------------
class GaussianNoise:
    """Independent N(0, 1) draws per step (scaled by the policy)."""

    def sample(self, like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(like.shape, generator=generator, device=like.device, dtype=torch.float32)

    def reset(self, done: torch.Tensor) -> None:
        """Nothing to reset: the draws are independent."""

    def state_dict(self) -> dict[str, torch.Tensor | None]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor | None]) -> None:
        """Stateless."""


class OrnsteinUhlenbeckNoise:
    """Temporally correlated unit-scale noise, one process per env (Lillicrap et al. 2016; θ, dt as SB3):

        x ← x + θ (0 − x) dt + √dt · ε,   ε ~ N(0, I)

    The state starts at 0 and returns to 0 where an episode ended (:meth:`reset`). It is part of the
    collector's checkpoint state (per rank, next to the envs it follows), so a resumed run continues it exactly.
    """

    def __init__(self, theta: float = 0.15, dt: float = 1e-2) -> None:
        self.theta, self.dt = theta, dt
        self.x: torch.Tensor | None = None

    def sample(self, like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.x is None or self.x.shape != like.shape:
            self.x = torch.zeros(like.shape, device=like.device, dtype=torch.float32)
        eps = torch.randn(like.shape, generator=generator, device=like.device, dtype=torch.float32)
        self.x = self.x - self.theta * self.x * self.dt + math.sqrt(self.dt) * eps
        return self.x

    def reset(self, done: torch.Tensor) -> None:
        if self.x is not None:
            self.x[done.to(self.x.device)] = 0.0

    def state_dict(self) -> dict[str, torch.Tensor | None]:
        return {"x": None if self.x is None else self.x.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor | None]) -> None:
        x = state.get("x")
        self.x = None if x is None else x.clone()


def make_noise(kind: str, ou_theta: float = 0.15, ou_dt: float = 1e-2) -> GaussianNoise | OrnsteinUhlenbeckNoise:
    if kind == "gaussian":
        return GaussianNoise()
    if kind == "ou":
        return OrnsteinUhlenbeckNoise(ou_theta, ou_dt)
    raise ValueError(f"unknown exploration noise {kind!r}; use 'gaussian' or 'ou'")


def noise_std(frames: int, start: float, end: float | None, decay_frames: int) -> float:
    """Exploration σ at a frame count: ``start``, or linearly from ``start`` to ``end`` over ``decay_frames``."""
    if end is None or decay_frames <= 0:
        return start
    return start + (end - start) * min(1.0, frames / decay_frames)


class NoisyDeterministicPolicy(nn.Module):
    """The behaviour policy β(s) = clip(μ_θ(s) + h · σ · noise, low, high) (Rossi Alg. 9.4 "Require: β").

    The collector calls :meth:`reset` with the episode-end mask after each env step and saves
    :meth:`exploration_state` with its own state.
    """

    def __init__(self, actor: DeterministicActor, noise: GaussianNoise | OrnsteinUhlenbeckNoise,
                 std: Callable[[], float]) -> None:
        super().__init__()
        self.actor, self.noise, self.std = actor, noise, std

    def forward(self, obs: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        mu = self.actor(obs)
        noisy = mu + self.actor.action_scale * (self.std() * self.noise.sample(mu, generator))
        return {"action": torch.maximum(torch.minimum(noisy, self.actor.high), self.actor.low)}

    def reset(self, done: torch.Tensor) -> None:
        self.noise.reset(done)

    def exploration_state(self) -> dict[str, torch.Tensor | None]:
        return self.noise.state_dict()

    def load_exploration_state(self, state: dict[str, torch.Tensor | None]) -> None:
        self.noise.load_state_dict(state)


@torch.no_grad()
def act_with(actor: DeterministicActor, obs: torch.Tensor, deterministic: bool,
             std: Callable[[], float]) -> torch.Tensor:
    """``RLModule.act`` of the deterministic actor-critics: μ(s), or μ(s) plus fresh Gaussian noise of scale
    ``std()`` (a behaviour policy without the collector's noise state)."""
    if deterministic:
        return actor(obs)
    return NoisyDeterministicPolicy(actor, GaussianNoise(), std)(obs, torch.Generator(obs.device))["action"]


class DeterministicActorCritic(nn.Module):
    """μ_θ, n critics Q_ψi and their target copies θ', ψi' (Rossi Alg. 9.4/10.1: "copy ψ' ← ψ, θ' ← θ").

    Target networks follow their online networks by Polyak averaging, θ' ← τ θ + (1 − τ) θ' (Rossi eq. 2.8 with
    ς = 1 − τ), with separate coefficients for the critics (ς) and the actor (ζ) as the seed's Alg. 9.4 allows.
    """

    def __init__(self, spec: EnvSpec, hidden: list[int], activation: str = "relu", n_critics: int = 1,
                 critic_hidden: list[int] | None = None) -> None:
        super().__init__()
        self.actor = DeterministicActor(spec, hidden, activation)
        self.critic = QCritics(spec, critic_hidden if critic_hidden is not None else hidden, activation, n_critics)
        self.actor_target = make_target(self.actor)
        self.critic_target = make_target(self.critic)

    def update_targets_(self, critic_tau: float, actor_tau: float) -> None:
        polyak_update_(self.critic_target, self.critic, critic_tau)
        polyak_update_(self.actor_target, self.actor, actor_tau)

    def q1_frozen(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Q_ψ1(s, a) with ψ1 treated as constants: the gradient reaches the action (and so θ) only.

        The actor step "changes only θ"; detaching ψ also saves the critic's weight gradients.
        """
        params = {k: v.detach() for k, v in self.critic.nets[0].named_parameters()}
        x = torch.cat([obs, action.to(obs.dtype)], -1)
        return torch.func.functional_call(self.critic.nets[0], params, (x,)).squeeze(-1).float()
