"""Policy heads: the distribution an action is drawn from, as explicit tensors.

A head maps features to distribution parameters; every other method is a pure function of those parameters,
computed in float32 even under bf16 autocast (log-prob differences are what PPO's ratio is made of).
Discrete: softmax over |A| logits (Rossi §3.1). Continuous: diagonal Gaussian with a state-independent,
learned log-std (Rossi §3.1: "output it as log-std"; App. A.1 for the KL of diagonal Gaussians), or SAC's
tanh-squashed Gaussian with a state-dependent mean and log-std, scaled to the action bounds (Rossi §11.2).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lrl.spec import EnvSpec

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


class StochasticPolicy(nn.Module):
    """A network that ends in a :class:`PolicyHead`: :meth:`policy_params` gives the head's distribution parameters
    (``self(obs)`` unless a subclass says otherwise), :meth:`act` the action ``RLModule.act`` returns."""

    head: PolicyHead

    def policy_params(self, obs: torch.Tensor) -> Params:
        return self(obs)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        """The distribution's mode, or a sample drawn from the global RNG."""
        params = self.policy_params(obs)
        return self.head.mode(params) if deterministic else self.head.sample(params)

    # --- the policy as a unit another run can start from (``algo.init_from``, docs/bc.md) ------------------------
    def policy_body(self) -> nn.Module:
        """The layers between the observation and the head (an actor-critic's actor body)."""
        raise NotImplementedError

    def policy_layers(self) -> list[str]:
        """The policy's structure, layer by layer (``Linear(4, 64)``, ``Tanh``, ..., ``CategoricalHead(64, 2)``):
        two policies with the same list compute the same function from the same :meth:`policy_state`. Shapes alone
        would not say so (a tanh and a relu body hold equally shaped weights)."""
        out = []
        for m in self.policy_body().modules():
            if isinstance(m, nn.Linear):
                out.append(f"Linear({m.in_features}, {m.out_features})")
            elif not list(m.children()):
                out.append(type(m).__name__)
        linear = next(m for m in self.head.modules() if isinstance(m, nn.Linear))
        return [*out, f"{type(self.head).__name__}({linear.in_features}, {linear.out_features})"]

    def policy_state(self) -> dict[str, torch.Tensor]:
        """The body's and the head's parameters (``body.*``, ``head.*``), detached copies: what distinguishes this
        policy from a freshly initialised one of the same structure."""
        parts = {"body": self.policy_body(), "head": self.head}
        return {f"{name}.{k}": v.detach().clone() for name, part in parts.items()
                for k, v in part.state_dict().items()}

    @torch.no_grad()
    def load_policy_state(self, state: dict[str, torch.Tensor]) -> None:
        """Set the body and the head from :meth:`policy_state` of a policy with the same :meth:`policy_layers`."""
        for name, part in (("body", self.policy_body()), ("head", self.head)):
            prefix = f"{name}."
            part.load_state_dict({k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)})


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
        # torch.distributions.Categorical at small batch sizes.
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
        # Rossi eq. A.9: H = ½ log(2πe σ²) per dimension
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


def log1m_tanh_sq(u: torch.Tensor) -> torch.Tensor:
    """log(1 − tanh(u)²), the log-derivative of tanh, in a form that is exact and finite for every u.

    1 − tanh(u)² = 4 / (e^u + e^−u)², so log(1 − tanh(u)²) = 2 (log 2 − u − softplus(−2u)). The naive
    ``log(1 - tanh(u)**2)`` is log 0 = −∞ once tanh(u) rounds to ±1 (|u| ≳ 9 in float32); adding an ε inside the
    log (SB3) keeps it finite but biases the density of nearly saturated actions.
    """
    return 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))


class TanhGaussianHead(PolicyHead):
    """SAC's policy head (Rossi §11.2-11.3, eq. 11.6/11.8): a = c + s ⊙ tanh(u), u = μ(x) + σ(x) ⊙ ε, ε ~ N(0, I),
    with a state-dependent mean μ and log-std log σ (two linear layers on the features), c = (high + low) / 2 and
    s = (high − low) / 2 mapping tanh's (−1, 1) onto the action bounds.

    The density of a follows from the change of variables (Rossi App. A.8 eq. a.36-a.38):

        log π(a|x) = Σ_d [ log N(u_d; μ_d, σ_d) − log(1 − tanh(u_d)²) − log s_d ]

    :meth:`rsample` computes it from the pre-squash u it drew (exact, and reparameterised: gradients reach μ and σ
    through u while ε is a constant); :meth:`log_prob` of a given action inverts the squash first (atanh of a
    value clamped just inside (−1, 1)). ``log_scale`` is the constant Σ_d log s_d. The log-std is clamped to
    [``log_std_min``, ``log_std_max``] (SB3's [−20, 2]) so σ neither vanishes nor explodes. The squashed
    distribution has no closed-form entropy or KL: SAC estimates the entropy as −E[log π].
    """

    loc: torch.Tensor
    scale: torch.Tensor

    def __init__(self, in_dim: int, action_dim: int, low: tuple[float, ...] | None = None,
                 high: tuple[float, ...] | None = None, log_std_min: float = -20.0, log_std_max: float = 2.0) -> None:
        super().__init__()
        self.mean = nn.Linear(in_dim, action_dim)
        self.log_std = nn.Linear(in_dim, action_dim)
        lo = torch.tensor(low if low is not None else [-1.0] * action_dim, dtype=torch.float32)
        hi = torch.tensor(high if high is not None else [1.0] * action_dim, dtype=torch.float32)
        if lo.shape != (action_dim,) or hi.shape != (action_dim,) or not bool((hi > lo).all()):
            raise ValueError(f"action bounds must be finite, of length {action_dim}, with high > low")
        self.register_buffer("loc", (hi + lo) / 2, persistent=False)
        self.register_buffer("scale", (hi - lo) / 2, persistent=False)
        self.log_scale = float(self.scale.double().log().sum())
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def forward(self, features: torch.Tensor) -> Params:  # type: ignore[override]
        log_std = self.log_std(features).float().clamp(self.log_std_min, self.log_std_max)
        return self.mean(features).float(), log_std

    def _log_prob_u(self, mean: torch.Tensor, log_std: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        z = (u - mean) * torch.exp(-log_std)
        gaussian = -0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)
        return (gaussian - log1m_tanh_sq(u)).sum(-1) - self.log_scale

    def _pre_squash(self, params: Params, generator: torch.Generator | None) -> torch.Tensor:
        mean, log_std = params
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + log_std.exp() * noise

    def rsample(self, params: Params, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised action within the bounds and its log-density (Rossi eq. 11.6/11.8)."""
        u = self._pre_squash(params, generator)
        return self.loc + self.scale * torch.tanh(u), self._log_prob_u(params[0], params[1], u)

    def sample(self, params: Params, generator: torch.Generator | None = None) -> torch.Tensor:
        """An action only (acting needs no log-density): the same draw as :meth:`rsample`."""
        return self.loc + self.scale * torch.tanh(self._pre_squash(params, generator))

    def log_prob(self, params: Params, action: torch.Tensor) -> torch.Tensor:
        mean = params[0]
        eps = torch.finfo(mean.dtype).eps
        y = ((action.to(mean.dtype) - self.loc) / self.scale).clamp(-1.0 + eps, 1.0 - eps)
        return self._log_prob_u(params[0], params[1], torch.atanh(y))

    def mode(self, params: Params) -> torch.Tensor:
        return self.loc + self.scale * torch.tanh(params[0])


def make_policy_head(spec: EnvSpec, in_dim: int, log_std_init: float = 0.0) -> PolicyHead:
    if spec.action_kind == "discrete":
        return CategoricalHead(in_dim, spec.action_dim)
    return GaussianHead(in_dim, spec.action_dim, log_std_init)
