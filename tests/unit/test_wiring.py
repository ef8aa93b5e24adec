"""Wiring tests: one ``training_step`` of every registered algorithm on a fixed, hand-made batch, against an update
written by hand in this file from the algorithm's equations.

A module's loss functions are tested on their own elsewhere; these tests catch what those cannot: the module
handing the wrong tensor to a correct loss (``value`` for ``value_target``, ``truncated`` for ``terminated``, the
target network where the online one belongs, a stale copy of the policy, ...). Each reference works on a copy of
the module's parameters with plain torch ops (``F.linear``, ``log_softmax``, the textbook density, entropy and KL
formulas): it calls no module method (but TD3's ``generator()``, for the state of its noise generator) and none of
``lrl``'s loss, estimator or network functions. Each test compares, after one step, the returned loss and the
gradients (automatic optimisation) or the gradients the optimisers used (manual optimisation), and the parameters
after the step, targets and multipliers included.

The modules run outside a Trainer: :func:`attach` gives them a stand-in trainer whose data source is a
:class:`FakeSource` (``lrl.contract.DataSource``), their own ``configure_optimizers``, and a plain backward. The
batches hold terminated *and* truncated steps and rollouts that end mid-episode, so every flag matters, and the
target networks differ from the online ones. Gradient clipping is Lightning's (automatic optimisation) or off
(``max_grad_norm=None``), so it is not part of these tests.

DDPG is covered by ``tests/unit/test_ddpg_td3.py::test_ddpg_step_updates_everything_and_matches_the_equations``
(the template of these tests); TD3's step is below.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import torch
import torch.nn.functional as F
from tensordict import TensorDict
from torch import Tensor, nn

from lrl.algos.a2c.module import A2C
from lrl.algos.base import RLModule
from lrl.algos.dqn.module import DQN
from lrl.algos.npg.module import NPG
from lrl.algos.offpg.module import OffPolicyPG
from lrl.algos.ppo.module import PPO
from lrl.algos.ppo_kl.module import PPOKL
from lrl.algos.reinforce.module import Reinforce
from lrl.algos.sac.module import SAC
from lrl.algos.sarsa.module import SARSA
from lrl.algos.td3.module import TD3
from lrl.algos.trpo.module import TRPO
from lrl.contract import Batch, ClockUnit, DataSource
from lrl.spec import Spec

DISCRETE = Spec("Toy-v0", (4,), "discrete", 3)
CONTINUOUS = Spec("Toy-v0", (3,), "continuous", 2, (-2.0, -1.0), (2.0, 1.0))
SPECS = pytest.mark.parametrize("spec", [DISCRETE, CONTINUOUS], ids=["categorical", "gaussian"])
LOG_2PI = math.log(2 * math.pi)


# --- running a module outside a Trainer ----------------------------------------------------------------------
@dataclass
class FakeSource:
    """The run's data source as a module sees it during its step (``lrl.contract.DataSource``)."""

    clock_unit: ClockUnit = "frames"
    clock: int = 1000
    at_boundary: bool = True  # the step is the last one of its rollout
    generator: torch.Generator = field(default_factory=lambda: torch.Generator().manual_seed(7))
    ended: bool = False

    def end_rollout(self) -> None:
        self.ended = True

    def acting_generator(self) -> torch.Generator:
        return self.generator

    def recent_episodes(self) -> list[tuple[float, int]]:
        return []

    def observation_stats(self) -> dict[str, Any] | None:
        return None

    def write_sidecar(self, dirpath: Path) -> Path | None:
        return None


class LitOpt:
    """What Lightning's ``LightningOptimizer`` offers a module: ``.optimizer``, ``step`` (which, under manual
    optimisation, counts the trainer's ``global_step`` up, as Lightning does) and ``zero_grad``."""

    def __init__(self, optimizer: torch.optim.Optimizer, trainer: Any) -> None:
        self.optimizer, self.trainer = optimizer, trainer

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        out = self.optimizer.step(closure)
        self.trainer.global_step += 1
        return out

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)


def attach(m: RLModule, source: FakeSource | None = None) -> list[torch.optim.Optimizer]:
    """A stand-in trainer (first optimiser step, one process, float32), the module's own optimisers as
    ``optimizers()`` returns them (one, or a list), and a plain ``manual_backward``."""
    source = source if source is not None else FakeSource()
    assert isinstance(source, DataSource)
    m.trainer = SimpleNamespace(datamodule=source, global_step=0, world_size=1,  # type: ignore[assignment]
                                precision="32-true", is_global_zero=True, loggers=[])
    built: Any = m.configure_optimizers()
    opts: list[torch.optim.Optimizer] = built if isinstance(built, list) else [built]
    wrapped = [LitOpt(o, m.trainer) for o in opts]
    m.optimizers = lambda *a, **k: wrapped[0] if len(wrapped) == 1 else wrapped  # type: ignore[method-assign, assignment]
    m.manual_backward = lambda loss, *a, **k: loss.backward()  # type: ignore[method-assign]
    return opts


def step(m: RLModule, td: TensorDict) -> Any:
    """One ``training_step`` on ``td``, the first (and only) minibatch of rollout 0, half the budget left."""
    batch = Batch(td, clock=1000, progress_remaining=0.5, rollout=0, first=True)
    return m.training_step(iter([(batch, 0, 0)]))


def automatic_step(m: RLModule, td: TensorDict) -> tuple[Tensor, dict[str, Tensor]]:
    """``training_step``, then Lightning's automatic optimisation: backward, and the module's ``optimizer_step``
    (the optimiser step, then its own hook: target networks, multipliers). Returns the loss and the gradients."""
    loss = step(m, td)
    opt = cast(LitOpt, m.optimizers()).optimizer
    opt.zero_grad()
    loss.backward()
    grads = {k: p.grad.clone() for k, p in m.named_parameters() if p.grad is not None}
    m.optimizer_step(0, 0, opt, lambda: loss)
    return loss.detach(), grads


def params_of(net: nn.Module) -> dict[str, Tensor]:
    """A copy of a network's parameters, by name, as leaves that take gradients where the originals do."""
    return {k: v.detach().clone().requires_grad_(v.requires_grad) for k, v in net.named_parameters()}


def named(name: str) -> Callable[[str], str]:
    return lambda message: f"{name}: {message}"


def assert_params(net: nn.Module, expected: dict[str, Tensor]) -> None:
    got = dict(net.named_parameters())
    assert set(got) == set(expected)
    for k, v in got.items():
        torch.testing.assert_close(v.detach(), expected[k].detach(), msg=named(k))


def assert_grads(got: dict[str, Tensor], names: list[str], expected: tuple[Tensor, ...], prefix: str = "") -> None:
    for k, g in zip(names, expected, strict=True):
        torch.testing.assert_close(got[prefix + k], g, msg=named(f"grad {k}"))


def perturb_(net: nn.Module, scale: float, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


# --- hand-made data -------------------------------------------------------------------------------------------
def _actions(spec: Spec, shape: tuple[int, ...], g: torch.Generator) -> Tensor:
    if spec.action_kind == "discrete":
        return torch.randint(spec.action_dim, shape, generator=g)
    low, high = torch.tensor(spec.action_low), torch.tensor(spec.action_high)
    return low + (high - low) * torch.rand(*shape, spec.action_dim, generator=g)


def rollout(spec: Spec, seed: int = 0) -> TensorDict:
    """An on-policy rollout [2 envs, 6 steps] in TorchRL's layout: a termination and a truncation in each env,
    both envs cut mid-episode at the end; after an episode end the next observation is a fresh reset one."""
    g = torch.Generator().manual_seed(seed)
    n, t, d = 2, 6, spec.obs_dim
    terminated = torch.zeros(n, t, dtype=torch.bool)
    truncated = torch.zeros(n, t, dtype=torch.bool)
    terminated[0, 1], truncated[0, 3], truncated[1, 1], terminated[1, 4] = True, True, True, True
    done = terminated | truncated
    next_obs = torch.randn(n, t, d, generator=g)  # on episode ends: the true final observation
    obs = torch.randn(n, t, d, generator=g)
    obs[:, 1:] = torch.where(done[:, :-1, None], obs[:, 1:], next_obs[:, :-1])
    return TensorDict({
        "observation": obs, "action": _actions(spec, (n, t), g),
        "next": {"observation": next_obs, "reward": torch.randn(n, t, 1, generator=g),
                 "terminated": terminated[..., None], "truncated": truncated[..., None], "done": done[..., None]},
    }, [n, t])


def transitions(spec: Spec, n: int = 32, seed: int = 0) -> TensorDict:
    """A replay minibatch of ``n`` independent transitions, about a quarter terminated and a quarter truncated."""
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(n, generator=g)
    terminated, truncated = u < 0.25, (u >= 0.25) & (u < 0.5)
    return TensorDict({
        "observation": torch.randn(n, spec.obs_dim, generator=g), "action": _actions(spec, (n,), g),
        "next": {"observation": torch.randn(n, spec.obs_dim, generator=g), "reward": torch.randn(n, 1, generator=g),
                 "terminated": terminated[:, None], "truncated": truncated[:, None],
                 "done": (terminated | truncated)[:, None]},
    }, [n])


def episodes(spec: Spec, seed: int = 0) -> TensorDict:
    """A complete-episode rollout [2 envs, 7 steps] with its ``mask``: env 0 holds an episode that terminates at
    t = 1 and one truncated at t = 5, then a padding step; env 1 one truncated at t = 2 and one terminated at
    t = 6. Padding is marked terminated and done, with reward 0 (the collector's layout)."""
    g = torch.Generator().manual_seed(seed)
    n, t, d = 2, 7, spec.obs_dim
    terminated = torch.zeros(n, t, dtype=torch.bool)
    truncated = torch.zeros(n, t, dtype=torch.bool)
    mask = torch.ones(n, t, dtype=torch.bool)
    terminated[0, 1], truncated[0, 5], truncated[1, 2], terminated[1, 6] = True, True, True, True
    mask[0, 6], terminated[0, 6] = False, True
    done = terminated | truncated
    next_obs = torch.randn(n, t, d, generator=g)
    obs = torch.randn(n, t, d, generator=g)
    obs[:, 1:] = torch.where(done[:, :-1, None], obs[:, 1:], next_obs[:, :-1])
    reward = torch.randn(n, t, 1, generator=g) * mask[..., None]
    return TensorDict({
        "observation": obs, "action": _actions(spec, (n, t), g), "mask": mask,
        "next": {"observation": next_obs, "reward": reward, "terminated": terminated[..., None],
                 "truncated": truncated[..., None], "done": done[..., None]},
    }, [n, t])


# --- hand-written policies and values (plain torch ops on a dict of parameters) ----------------------------------
def mlp_tanh(p: dict[str, Tensor], prefix: str, x: Tensor) -> Tensor:
    """One hidden layer with tanh: the ``hidden=[8]`` bodies of the policy-gradient family."""
    return torch.tanh(F.linear(x, p[f"{prefix}.0.weight"], p[f"{prefix}.0.bias"]))


def policy_dist(p: dict[str, Tensor], body: str, head: str, obs: Tensor, spec: Spec) -> tuple[Tensor, ...]:
    """(log-probabilities,) of a softmax policy, or (mean, log-std) of a diagonal Gaussian with a free log-std."""
    out = F.linear(mlp_tanh(p, body, obs), p[f"{head}.linear.weight"], p[f"{head}.linear.bias"])
    if spec.action_kind == "discrete":
        return (torch.log_softmax(out, -1),)
    return out, p[f"{head}.log_std"].expand_as(out)


def log_prob(dist: tuple[Tensor, ...], action: Tensor) -> Tensor:
    if len(dist) == 1:
        return dist[0].gather(-1, action[..., None]).squeeze(-1)
    mean, log_std = dist
    return (-0.5 * ((action - mean) / log_std.exp()) ** 2 - log_std - 0.5 * LOG_2PI).sum(-1)


def entropy(dist: tuple[Tensor, ...]) -> Tensor:
    if len(dist) == 1:
        return -(dist[0].exp() * dist[0]).sum(-1)
    return (dist[1] + 0.5 * (LOG_2PI + 1)).sum(-1)


def kl(old: tuple[Tensor, ...], new: tuple[Tensor, ...]) -> Tensor:
    """KL(old ‖ new) per state."""
    if len(old) == 1:
        return (old[0].exp() * (old[0] - new[0])).sum(-1)
    (m0, s0), (m1, s1) = old, new
    return (s1 - s0 + ((2 * s0).exp() + (m0 - m1) ** 2) / (2 * (2 * s1).exp()) - 0.5).sum(-1)


def ac_value(p: dict[str, Tensor], obs: Tensor) -> Tensor:
    """V(s) of ``ActorCritic``: its own tanh body and a linear output."""
    return F.linear(mlp_tanh(p, "critic_body", obs), p["value_out.weight"], p["value_out.bias"]).squeeze(-1)


def ac_policy(p: dict[str, Tensor], obs: Tensor, spec: Spec) -> tuple[Tensor, ...]:
    return policy_dist(p, "actor_body", "head", obs, spec)


def gae(reward: Tensor, value: Tensor, next_value: Tensor, terminated: Tensor, done: Tensor, gamma: float,
        lam: float) -> Tensor:
    """Â_t = δ_t + γλ(1 − done_t) Â_{t+1}, δ_t = r_t + γ(1 − terminated_t) V(s'_t) − V(s_t), per env row, 0 after
    the rollout's last step (Rossi eq. 5.6–5.7)."""
    adv = torch.zeros_like(reward)
    for i in range(reward.shape[0]):
        running = torch.zeros(())
        for t in reversed(range(reward.shape[1])):
            bootstrap = 0.0 if terminated[i, t] else gamma * next_value[i, t]
            delta = reward[i, t] + bootstrap - value[i, t]
            running = delta + (0.0 if done[i, t] else gamma * lam) * running
            adv[i, t] = running
    return adv


def standardise(x: Tensor) -> Tensor:
    """(x − mean) / (sample std + 1e-8), the per-minibatch advantage normalisation of PPO and TRPO."""
    return (x - x.mean()) / (x.std() + 1e-8)


def flags(td: TensorDict) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(reward, terminated, truncated, done) without the trailing singleton dimension."""
    return tuple(td["next", k].squeeze(-1) for k in ("reward", "terminated", "truncated", "done"))


def adam(params: dict[str, Tensor], names: list[str], lr: float, eps: float) -> torch.optim.Adam:
    return torch.optim.Adam([params[k] for k in names], lr=lr, eps=eps)


def reference_step(opt: torch.optim.Optimizer, params: dict[str, Tensor], names: list[str], loss: Tensor
                   ) -> tuple[Tensor, ...]:
    """Gradients of ``loss`` on ``names``, then one step of ``opt`` with them."""
    grads = torch.autograd.grad(loss, [params[k] for k in names])
    for k, g in zip(names, grads, strict=True):
        params[k].grad = g
    opt.step()
    return grads


# === PPO (clipped surrogate) =====================================================================================
@SPECS
def test_ppo(spec: Spec) -> None:
    """PPO (Schulman et al. 2017; Rossi ch. 8): GAE(γ, λ) advantages and λ-return targets from θ_old at
    ``process_rollout``; then, from a θ that has moved since (a later minibatch), the loss
    −mean min(r Â, clip(r, 1 ± ε) Â) + c_v mean max((V − V_targ)², (V_old + clip(V − V_old, ±ε_v) − V_targ)²) − c_e H
    with Â standardised per minibatch, r = π_θ(a|s)/π_old(a|s) from the collector's ``sample_log_prob``, and
    ε and the step size decayed linearly (half the budget left)."""
    torch.manual_seed(0)
    gamma, lam, clip, clip_vf, c_v, c_e, lr = 0.9, 0.8, 0.2, 0.05, 0.7, 0.05, 0.01
    m = PPO(spec, hidden=[8], minibatch_size=None, lr=lr, lr_schedule="linear", gamma=gamma, gae_lambda=lam,
            clip_range=clip, clip_schedule="linear", clip_range_vf=clip_vf, vf_coef=c_v, ent_coef=c_e,
            max_grad_norm=None, ortho_init=False)
    (opt,) = attach(m)
    raw, td, _, adv, v_old = gae_rollout(m, spec, gamma, lam)

    perturb_(m.net, 0.1, seed=1)  # θ ≠ θ_old: ratios and value clipping at work
    p = params_of(m.net)
    flat = td.reshape(-1)
    assert step(m, flat) is None  # manual optimisation: the module takes its optimiser steps itself
    recorded = m.flush_metrics(force=True)
    assert recorded is not None
    loss = torch.tensor(recorded["loss/total"])  # the one minibatch's loss, as logged
    grads = {k: v.grad for k, v in m.named_parameters() if v.grad is not None}  # what the step used

    obs, action = raw["observation"].reshape(-1, spec.obs_dim), raw["action"].flatten(0, 1)
    a_n, v_targ, v_old = standardise(adv.reshape(-1)), (adv + v_old).reshape(-1), v_old.reshape(-1)
    dist = ac_policy(p, obs, spec)
    ratio = (log_prob(dist, action) - raw["sample_log_prob"].reshape(-1)).exp()
    clip_now = clip * 0.5
    clipped = ((ratio - 1).abs() > clip_now).float().mean()
    assert 0.1 < clipped < 0.9, "the batch should exercise the clip on some samples and not on others"
    surrogate = torch.minimum(ratio * a_n, ratio.clamp(1 - clip_now, 1 + clip_now) * a_n).mean()
    v = ac_value(p, obs)
    assert 0 < ((v - v_old).abs() > clip_vf).float().mean() < 1, "and the value clip likewise"
    v_clipped = v_old + (v - v_old).clamp(-clip_vf, clip_vf)
    v_loss = torch.maximum((v - v_targ) ** 2, (v_clipped - v_targ) ** 2).mean()
    expected = -surrogate + c_v * v_loss - c_e * entropy(dist).mean()
    torch.testing.assert_close(loss, expected.detach())
    names = list(p)
    ref_grads = reference_step(adam(p, names, lr * 0.5, eps=1e-5), p, names, expected)
    assert_grads(grads, names, ref_grads, prefix="net.")
    assert_params(m.net, p)
    assert opt.param_groups[0]["lr"] == pytest.approx(lr * 0.5)


@pytest.mark.parametrize("above", [True, False], ids=["stop", "go-on"])
def test_ppo_kl_early_stop(above: bool) -> None:
    """PPO's KL early stop (Rossi Alg. 8.1): when KL̂ = mean(log π_old(a|s) − log π_θ(a|s)) on the minibatch
    reaches ``target_kl`` before the step, the module asks the data source to drop the rest of the rollout and
    takes no step; just below it, it steps as usual."""
    torch.manual_seed(0)
    m = PPO(DISCRETE, hidden=[8], minibatch_size=None, max_grad_norm=None, ortho_init=False)
    old = params_of(m.net)
    raw = rollout(DISCRETE)
    with torch.no_grad():
        raw["sample_log_prob"] = log_prob(ac_policy(old, raw["observation"], DISCRETE), raw["action"])
    td = m.process_rollout(raw.clone())
    perturb_(m.net, 0.1, seed=1)
    with torch.no_grad():
        new_logp = log_prob(ac_policy(params_of(m.net), raw["observation"], DISCRETE), raw["action"])
        approx_kl = (raw["sample_log_prob"] - new_logp).mean().item()
    assert approx_kl > 1e-4
    m.hp.target_kl = approx_kl * (0.99 if above else 1.01)
    source = FakeSource()
    attach(m, source)
    before = params_of(m.net)
    step(m, td.reshape(-1))
    moved = any(not torch.equal(v, before[k]) for k, v in m.net.named_parameters())
    assert source.ended == above and moved != above


# === A2C ==========================================================================================================
@SPECS
def test_a2c(spec: Spec) -> None:
    """A2C (Rossi Alg. 3.3, eq. 3.29–3.33): Â = GAE(γ, λ) and the critic target y = GAE(γ, λ_c) + V from
    ``process_rollout``; one step on the whole rollout on −mean(log π(a|s) Â) + c_v mean((V − y)²) − c_e H, with
    RMSprop, actor step size η and critic step size ω (``critic_lr``), both decayed linearly."""
    torch.manual_seed(0)
    gamma, lam, lam_c, c_v, c_e, lr, critic_lr = 0.9, 0.7, 0.3, 0.6, 0.02, 0.01, 0.03
    m = A2C(spec, hidden=[8], lr=lr, lr_schedule="linear", critic_lr=critic_lr, gamma=gamma, gae_lambda=lam,
            critic_lambda=lam_c, vf_coef=c_v, ent_coef=c_e, max_grad_norm=None, ortho_init=False)
    attach(m)
    p = params_of(m.net)
    raw = rollout(spec)
    td = m.process_rollout(raw.clone())

    reward, terminated, _, done = flags(raw)
    with torch.no_grad():
        v, v_next = ac_value(p, raw["observation"]), ac_value(p, raw["next", "observation"])
        adv = gae(reward, v, v_next, terminated, done, gamma, lam)
        target = gae(reward, v, v_next, terminated, done, gamma, lam_c) + v
    torch.testing.assert_close(td["advantage"], adv)
    torch.testing.assert_close(td["value_target"], target)

    loss, grads = automatic_step(m, td.reshape(-1))
    obs, action = raw["observation"].reshape(-1, spec.obs_dim), raw["action"].flatten(0, 1)
    dist = ac_policy(p, obs, spec)
    expected = (-(log_prob(dist, action) * adv.reshape(-1)).mean()
                + c_v * ((ac_value(p, obs) - target.reshape(-1)) ** 2).mean() - c_e * entropy(dist).mean())
    torch.testing.assert_close(loss, expected.detach())
    actor = [k for k in p if k.startswith(("actor_body.", "head."))]
    critic = [k for k in p if k.startswith(("critic_body.", "value_out."))]
    assert sorted(actor + critic) == sorted(p)
    ref_opt = torch.optim.RMSprop([{"params": [p[k] for k in actor], "lr": lr * 0.5},
                                   {"params": [p[k] for k in critic], "lr": critic_lr * 0.5}], alpha=0.99, eps=1e-5)
    names = actor + critic
    assert_grads(grads, names, reference_step(ref_opt, p, names, expected), prefix="net.")
    assert_params(m.net, p)


# === PPO with an adaptive KL penalty ===========================================================================
@pytest.mark.parametrize(("spec", "rule"), [(DISCRETE, "adaptive"), (CONTINUOUS, "dual")],
                         ids=["categorical-adaptive", "gaussian-dual"])
def test_ppo_kl(spec: Spec, rule: str) -> None:
    """KL-penalty PPO (Brunskill, Fragkiadaki "PPO with Adaptive KL Penalty", Atreya Alg. 2): GAE advantages, λ-return
    targets and π_old's distribution from ``process_rollout``; from a θ that has moved since, the loss
    −(mean(r Â) − β mean KL) + c_v mean((V − V_targ)²) − c_e H, with KL(π_old ‖ π_θ) (adaptive) or KL(π_θ ‖ π_old)
    (dual); after the rollout's last step, the multiplier moves on the mean KL between π_old and the updated
    policy over the whole rollout: ×/÷ 2 around δ (adaptive) or β + α(KL − δ) (dual)."""
    torch.manual_seed(0)
    gamma, lam, beta, delta, alpha, c_v, c_e, lr = 0.9, 0.8, 0.7, 0.01, 5.0, 0.6, 0.03, 0.01
    m = PPOKL(spec, hidden=[8], minibatch_size=None, lr=lr, gamma=gamma, gae_lambda=lam, kl_coef=beta,
              kl_coef_update=rule, kl_target=delta, dual_lr=alpha, vf_coef=c_v, ent_coef=c_e,  # type: ignore[arg-type]
              max_grad_norm=None, ortho_init=False)
    attach(m)
    raw, td, old_dist, adv, v_old = gae_rollout(m, spec, gamma, lam)
    for i, t in enumerate(old_dist):
        torch.testing.assert_close(td["old_dist", str(i)], t)

    perturb_(m.net, 0.1, seed=1)  # θ ≠ θ_old: the penalty and its gradient are not zero
    p = params_of(m.net)
    loss, grads = automatic_step(m, td.reshape(-1))

    def penalty_kl(new: tuple[Tensor, ...]) -> Tensor:
        return kl(old_dist, new) if rule == "adaptive" else kl(new, old_dist)

    obs, action = raw["observation"], raw["action"]
    dist = ac_policy(p, obs, spec)
    ratio = (log_prob(dist, action) - raw["sample_log_prob"]).exp()
    a_n = standardise(adv.reshape(-1)).view_as(adv)
    expected = (-((ratio * a_n).mean() - beta * penalty_kl(dist).mean())
                + c_v * ((ac_value(p, obs) - (adv + v_old)) ** 2).mean() - c_e * entropy(dist).mean())
    torch.testing.assert_close(loss, expected.detach())
    names = list(p)
    assert_grads(grads, names, reference_step(adam(p, names, lr, eps=1e-5), p, names, expected), prefix="net.")
    assert_params(m.net, p)
    with torch.no_grad():
        mean_kl = penalty_kl(ac_policy(p, obs, spec)).mean().item()
    if rule == "adaptive":
        assert not delta / 1.5 < mean_kl < 1.5 * delta, "the test should move β"
        new_beta = beta * 2 if mean_kl >= 1.5 * delta else beta / 2
    else:
        new_beta = beta + alpha * (mean_kl - delta)
    assert m.kl_coef.item() == pytest.approx(new_beta, rel=1e-5)


# === DQN and SARSA =================================================================================================
def q_mlp(p: dict[str, Tensor], prefix: str, x: Tensor) -> Tensor:
    """Q(s, ·) of an ``mlp(obs, [8], |A|, relu)``: one output per action (Rossi Fig. 2.1)."""
    h = F.relu(F.linear(x, p[f"{prefix}.0.weight"], p[f"{prefix}.0.bias"]))
    return F.linear(h, p[f"{prefix}.2.weight"], p[f"{prefix}.2.bias"])


def huber(x: Tensor) -> Tensor:
    return torch.where(x.abs() < 1, 0.5 * x**2, x.abs() - 0.5)


def polyak_(p: dict[str, Tensor], target: str, online: str, tau: float) -> None:
    """θ' ← τ θ + (1 − τ) θ' (Rossi eq. 2.8 with ς = 1 − τ), by name."""
    with torch.no_grad():
        for k in p:
            if k.startswith(target + "."):
                p[k].copy_(tau * p[online + k[len(target):]] + (1 - tau) * p[k])


def td_step_reference(m: RLModule, p: dict[str, Tensor], td: TensorDict, y: Tensor, loss_kind: str, lr: float,
                      tau: float) -> None:
    """The rest of a DQN / SARSA step given the target y: the TD loss on Q(s, a), Adam on the online network, then
    the Polyak update of the target network; compared with the module's loss, gradients and parameters."""
    if m.automatic_optimization:  # SARSA
        loss, grads = automatic_step(m, td)
    else:  # DQN: the module takes its optimiser step itself; its loss as logged, the gradients the step used
        assert step(m, td) is None
        recorded = m.flush_metrics(force=True)
        assert recorded is not None
        loss = torch.tensor(recorded["loss/td"])
        grads = {k: v.grad for k, v in m.named_parameters() if v.grad is not None}
    err = q_mlp(p, "q", td["observation"]).gather(-1, td["action"][:, None]).squeeze(-1) - y
    assert (err.abs() > 1).any() and (err.abs() < 1).any(), "both branches of the Huber loss"
    expected = huber(err).mean() if loss_kind == "huber" else (err**2).mean()
    torch.testing.assert_close(loss, expected.detach())
    online = [k for k in p if k.startswith("q.")]
    assert_grads(grads, online, reference_step(adam(p, online, lr, eps=1e-8), p, online, expected))
    polyak_(p, "q_target", "q", tau)
    assert_params(m, p)


@pytest.mark.parametrize(("target", "loss_kind"), [("max", "huber"), ("double_dqn", "mse")])
def test_dqn(target: str, loss_kind: str) -> None:
    """DQN (Rossi Alg. 2.3; Mnih et al. 2015): y = r + γ (1 − terminated) Q'(s', argmax_a' Q_sel(s', a')), with
    Q_sel = the target network Q' (``max``) or the online Q (Double DQN, van Hasselt et al. 2016); one Adam step on
    the mean Huber (or squared) error of Q(s, a) − y, the step size decayed linearly; then Polyak on Q'."""
    torch.manual_seed(0)
    gamma, lr, tau = 0.9, 0.01, 0.3
    m = DQN(DISCRETE, hidden=[8], lr=lr, lr_schedule="linear", gamma=gamma, target=target,  # type: ignore[arg-type]
            loss=loss_kind, target_update="polyak", tau=tau, max_grad_norm=None)  # type: ignore[arg-type]
    assert m.q_target is not None
    perturb_(m.q_target, 0.5, seed=1)  # Q' ≠ Q
    attach(m)
    p = params_of(m)
    td = transitions(DISCRETE)
    reward, terminated, _, _ = flags(td)
    with torch.no_grad():
        next_q = q_mlp(p, "q_target", td["next", "observation"])
        online_choice = q_mlp(p, "q", td["next", "observation"]).argmax(-1)
        assert (online_choice != next_q.argmax(-1)).any(), "the two networks should disagree on some a'"
        best = online_choice if target == "double_dqn" else next_q.argmax(-1)
        y = reward + gamma * (~terminated) * next_q.gather(-1, best[:, None]).squeeze(-1)
    td_step_reference(m, p, td, y, loss_kind, lr * 0.5, tau)


@pytest.mark.parametrize("expected_sarsa", [False, True], ids=["sarsa", "expected-sarsa"])
def test_sarsa(expected_sarsa: bool) -> None:
    """SARSA (Rossi §2.10, eq. 2.9) and Expected SARSA (eq. 2.12) with a target network: ``process_rollout``
    fixes a' (the action the env took next, or one drawn from the ε-greedy π over the online Q at the true next
    observation where the rollout is cut: episode ends and the last step) or π(·|s') (ε/|A| + (1 − ε) on the
    greedy action, ε at the source's clock); y = r + γ (1 − terminated) Q'(s', a') or Σ_a π(a|s') Q'(s', a); one
    Adam step on the Huber loss of Q(s, a) − y; then Polyak on Q'. Sampled SARSA runs with ε = 0 so that a' at the
    cuts is the greedy action (how the collector's generator is used is tested in ``test_sarsa.py``)."""
    torch.manual_seed(0)
    gamma, lr, tau = 0.9, 0.01, 0.3
    eps = {"eps_start": 1.0, "eps_end": 0.1, "eps_decay_frames": 1000} if expected_sarsa else \
        {"eps_start": 0.0, "eps_end": 0.0}
    m = SARSA(DISCRETE, hidden=[8], lr=lr, gamma=gamma, expected=expected_sarsa, loss="huber",
              target_update="polyak", tau=tau, max_grad_norm=None, **eps)  # type: ignore[arg-type]
    assert m.q_target is not None
    perturb_(m.q_target, 0.5, seed=1)
    attach(m)
    m.set_clock(500)  # ε = 1 − 0.9 · 500/1000 = 0.55 for Expected SARSA
    p = params_of(m)
    raw = rollout(DISCRETE)
    td = m.process_rollout(raw.clone())

    reward, terminated, _, done = flags(raw)
    next_obs, action = raw["next", "observation"], raw["action"]
    with torch.no_grad():
        q_next, greedy = q_mlp(p, "q_target", next_obs), q_mlp(p, "q", next_obs).argmax(-1)
        if expected_sarsa:
            probs = torch.full(q_next.shape, 0.55 / 3)
            probs.scatter_add_(-1, greedy[..., None], torch.full(greedy[..., None].shape, 0.45))
            torch.testing.assert_close(td["next_probs"], probs)
            next_value = (probs * q_next).sum(-1)
        else:
            next_action = torch.empty_like(action)
            for i in range(action.shape[0]):
                for t in range(action.shape[1]):
                    cut = bool(done[i, t]) or t == action.shape[1] - 1
                    next_action[i, t] = greedy[i, t] if cut else action[i, t + 1]
            assert torch.equal(td["next_action"], next_action)
            next_value = q_next.gather(-1, next_action[..., None]).squeeze(-1)
        y = reward + gamma * (~terminated) * next_value
    td_step_reference(m, p, td.reshape(-1), y.reshape(-1), "huber", lr, tau)


# === SAC and TD3 ===================================================================================================
def box(spec: Spec) -> tuple[Tensor, Tensor]:
    return torch.tensor(spec.action_low), torch.tensor(spec.action_high)


def sac_policy(p: dict[str, Tensor], obs: Tensor) -> tuple[Tensor, Tensor]:
    """(μ(s), log σ(s)) of SAC's actor: a ReLU body and two linear outputs, log σ clamped to [−20, 2]."""
    h = F.relu(F.linear(obs, p["actor.body.0.weight"], p["actor.body.0.bias"]))
    log_std = F.linear(h, p["actor.head.log_std.weight"], p["actor.head.log_std.bias"]).clamp(-20.0, 2.0)
    return F.linear(h, p["actor.head.mean.weight"], p["actor.head.mean.bias"]), log_std


def squashed(spec: Spec, mean: Tensor, log_std: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
    """a = c + s·tanh(u), u = μ + σ ε, and the log-density of tanh(u) in (−1, 1)^|A| (Rossi eq. 11.6/11.8,
    App. A.8): Σ_d log N(u_d; μ_d, σ_d) − log(1 − tanh²u_d), with 1 − tanh²u = 4 / (e^u + e^−u)²."""
    u = mean + log_std.exp() * eps
    log1m_tanh_sq = 2 * (math.log(2) - u.abs() - torch.log1p(torch.exp(-2 * u.abs())))
    low, high = box(spec)
    action = (high + low) / 2 + (high - low) / 2 * torch.tanh(u)
    return action, (-0.5 * eps**2 - log_std - 0.5 * LOG_2PI - log1m_tanh_sq).sum(-1)


def ensemble_q(p: dict[str, Tensor], prefix: str, obs: Tensor, action: Tensor) -> Tensor:
    """[Q_i(s, a)]_i, [n, B], of SAC's critics: member i's weights are slice i of each ensemble layer."""
    x = torch.cat([obs, action], -1)
    w0, b0, w1, b1 = (p[f"{prefix}.layers.{j}.{k}"] for j in (0, 1) for k in ("weight", "bias"))
    return torch.stack([(F.relu(x @ w0[i] + b0[i]) @ w1[i] + b1[i]).squeeze(-1) for i in range(w0.shape[0])])


def test_sac() -> None:
    """SAC (Rossi Alg. 11.1, eq. 11.5–11.8; Haarnoja et al. 2018B): with α = exp(log α) before the step,
    y = r + γ (1 − terminated)(min_i Q'_i(s', a') − α log π(a'|s')), a' ~ π(·|s') fresh; the loss
    ½ Σ_i mean (Q_i(s, a) − y)² + mean(α log π(ã|s) − min_i Q_i(s, ã)) (critics held fixed, ã reparameterised)
    − mean(log α · (log π(ã|s) + H̄)), one Adam step with a step size per part, then Polyak on the target critics.
    The module draws the noise of a' first, then that of ã, from the global generator."""
    torch.manual_seed(0)
    gamma, tau, lrs = 0.9, 0.3, {"actor": 0.01, "critic": 0.02, "log_alpha": 0.03}
    m = SAC(CONTINUOUS, hidden=[8], actor_lr=lrs["actor"], critic_lr=lrs["critic"], alpha_lr=lrs["log_alpha"],
            gamma=gamma, tau=tau, alpha=0.5, autotune_alpha=True)
    perturb_(m.critic_target, 0.3, seed=1)
    attach(m)
    p = params_of(m)
    td = transitions(CONTINUOUS)
    torch.manual_seed(123)
    loss, grads = automatic_step(m, td)

    torch.manual_seed(123)
    b, a = td["action"].shape
    eps_next, eps_now = torch.randn(b, a), torch.randn(b, a)
    reward, terminated, _, _ = flags(td)
    obs, next_obs = td["observation"], td["next", "observation"]
    alpha = p["log_alpha"].detach().exp()
    with torch.no_grad():
        next_action, next_log_prob = squashed(CONTINUOUS, *sac_policy(p, next_obs), eps_next)
        soft_value = ensemble_q(p, "critic_target", next_obs, next_action).min(0).values - alpha * next_log_prob
        y = reward + gamma * (~terminated) * soft_value
    critic_loss = 0.5 * ((ensemble_q(p, "critic", obs, td["action"]) - y) ** 2).mean(-1).sum()
    action_pi, log_prob_pi = squashed(CONTINUOUS, *sac_policy(p, obs), eps_now)
    frozen = {k: v.detach() for k, v in p.items()}
    actor_loss = (alpha * log_prob_pi - ensemble_q(frozen, "critic", obs, action_pi).min(0).values).mean()
    alpha_loss = -(p["log_alpha"] * (log_prob_pi.detach() - a)).mean()  # H̄ = −|A|
    expected = critic_loss + actor_loss + alpha_loss
    torch.testing.assert_close(loss, expected.detach())

    parts = {part: [k for k in p if k.split(".")[0] == part] for part in lrs}
    names = [k for part in lrs for k in parts[part]]
    ref_opt = torch.optim.Adam([{"params": [p[k] for k in parts[part]], "lr": lr} for part, lr in lrs.items()],
                               eps=1e-8)
    assert_grads(grads, names, reference_step(ref_opt, p, names, expected))
    polyak_(p, "critic_target", "critic", tau)
    assert_params(m, p)


def det_actor(p: dict[str, Tensor], prefix: str, obs: Tensor, spec: Spec) -> Tensor:
    """μ(s) = c + h · tanh(f(s)) of the deterministic actor (a ReLU MLP f)."""
    low, high = box(spec)
    f = F.linear(F.relu(F.linear(obs, p[f"{prefix}.net.0.weight"], p[f"{prefix}.net.0.bias"])),
                 p[f"{prefix}.net.2.weight"], p[f"{prefix}.net.2.bias"])
    return (high + low) / 2 + (high - low) / 2 * torch.tanh(f)


def det_q(p: dict[str, Tensor], prefix: str, i: int, obs: Tensor, action: Tensor) -> Tensor:
    """Q_i(s, a) of critic i: a ReLU MLP on [s, a]."""
    h = F.relu(F.linear(torch.cat([obs, action], -1), p[f"{prefix}.nets.{i}.0.weight"], p[f"{prefix}.nets.{i}.0.bias"]))
    return F.linear(h, p[f"{prefix}.nets.{i}.2.weight"], p[f"{prefix}.nets.{i}.2.bias"]).squeeze(-1)


def test_td3() -> None:
    """TD3 (Rossi Alg. 10.1, eq. 10.1; Fujimoto et al. 2018) with d = 1, so one step runs every part:
    a' = clip(μ'(s') + clip(σ̃ h ε, −c h, c h), low, high) with ε from the module's generator (h the half-range),
    y = r + γ (1 − terminated) min(Q'_1, Q'_2)(s', a'); an Adam step of both critics on Σ_i mean (Q_i(s, a) − y)²;
    then an Adam step of the actor on −mean Q_1(s, μ(s)) with the updated critic; then Polyak on every target."""
    torch.manual_seed(0)
    gamma, lr, actor_lr, tau, actor_tau, sigma, c = 0.9, 0.01, 0.02, 0.3, 0.2, 0.3, 0.4
    m = TD3(CONTINUOUS, hidden=[8], lr=lr, actor_lr=actor_lr, gamma=gamma, tau=tau, actor_tau=actor_tau,
            policy_delay=1, target_policy_noise=sigma, target_noise_clip=c)
    perturb_(m.ac.actor_target, 0.3, seed=1)
    perturb_(m.ac.critic_target, 0.3, seed=2)
    attach(m)
    p = params_of(m)
    gen = torch.Generator()
    gen.set_state(m.generator().get_state())
    td = transitions(CONTINUOUS)
    step(m, td)
    grads = {k: v.grad for k, v in m.named_parameters() if v.grad is not None}  # what each optimiser stepped with

    reward, terminated, _, _ = flags(td)
    obs, next_obs = td["observation"], td["next", "observation"]
    low, high = box(CONTINUOUS)
    half = (high - low) / 2
    with torch.no_grad():
        noise = sigma * half * torch.randn(td["action"].shape, generator=gen)
        assert (noise.abs() > c * half).any() and (noise.abs() < c * half).any(), "the noise clip should bite sometimes"
        next_action = (det_actor(p, "ac.actor_target", next_obs, CONTINUOUS) + noise.clamp(-c * half, c * half)
                       ).clamp(low, high)
        next_q = torch.minimum(*(det_q(p, "ac.critic_target", i, next_obs, next_action) for i in (0, 1)))
        y = reward + gamma * (~terminated) * next_q
    critic = [k for k in p if k.startswith("ac.critic.")]
    critic_loss = sum(((det_q(p, "ac.critic", i, obs, td["action"]) - y) ** 2).mean() for i in (0, 1))
    assert_grads(grads, critic, reference_step(adam(p, critic, lr, 1e-8), p, critic, critic_loss))  # type: ignore[arg-type]
    actor = [k for k in p if k.startswith("ac.actor.")]
    frozen = {k: v.detach() for k, v in p.items()}
    actor_loss = -det_q(frozen, "ac.critic", 0, obs, det_actor(p, "ac.actor", obs, CONTINUOUS)).mean()
    assert_grads(grads, actor, reference_step(adam(p, actor, actor_lr, 1e-8), p, actor, actor_loss))
    polyak_(p, "ac.critic_target", "ac.critic", tau)
    polyak_(p, "ac.actor_target", "ac.actor", actor_tau)
    assert_params(m, p)


# === REINFORCE and off-policy PG ===================================================================================
def mlp_value(p: dict[str, Tensor], prefix: str, obs: Tensor) -> Tensor:
    """V(s) of ``value_net``: a tanh MLP with one output."""
    return F.linear(mlp_tanh(p, prefix, obs), p[f"{prefix}.2.weight"], p[f"{prefix}.2.bias"]).squeeze(-1)


def returns_to_go(reward: Tensor, done: Tensor, gamma: float, bootstrap: Tensor) -> Tensor:
    """G_t = r_t + γ G_{t+1} inside an episode, G_end = r_end + γ · bootstrap_end at its last step."""
    out = torch.zeros_like(reward)
    for i in range(reward.shape[0]):
        running = torch.zeros(())
        for t in reversed(range(reward.shape[1])):
            running = reward[i, t] + gamma * (bootstrap[i, t] if done[i, t] else running)
            out[i, t] = running
    return out


def time_in_episode(done: Tensor) -> Tensor:
    """k_t: 0 at each episode's first step."""
    k = torch.zeros(done.shape, dtype=torch.long)
    for t in range(1, done.shape[1]):
        k[:, t] = torch.where(done[:, t - 1], 0, k[:, t - 1] + 1)
    return k


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    return (x * mask).sum() / mask.sum()


def pg_reference_step(p: dict[str, Tensor], grads: dict[str, Tensor], loss: Tensor, with_value: bool, obs: Tensor,
                      g: Tensor, mask: Tensor, lr: float, value_lr: float) -> None:
    """REINFORCE's and off-PG's update by hand: SGD on the policy alone, or (value baseline) one Adam with a policy
    and a value group, the loss plus Σ mask (V(s_t) − G_t)² / #real steps (13 in :func:`episodes`)."""
    policy = [k for k in p if k.startswith("policy.")]
    if with_value:
        loss = loss + (mask * (mlp_value(p, "value", obs) - g) ** 2).sum() / 13.0
        value = [k for k in p if k.startswith("value.")]
        ref_opt: torch.optim.Optimizer = torch.optim.Adam([{"params": [p[k] for k in policy], "lr": lr},
                                                           {"params": [p[k] for k in value], "lr": value_lr}])
        names = policy + value
    else:
        ref_opt, names = torch.optim.SGD([p[k] for k in policy], lr=lr), policy
    assert_grads(grads, names, reference_step(ref_opt, p, names, loss))


@pytest.mark.parametrize(("spec", "case"), [(DISCRETE, "value"), (CONTINUOUS, "average")],
                         ids=["categorical-value-adam", "gaussian-average-sgd"])
def test_reinforce(spec: Spec, case: str) -> None:
    """REINFORCE (Rossi Algs 3.1–3.2, Yin Alg. 2) on complete episodes with padding:
    loss −Σ_t mask · log π(a_t|s_t) Φ_t / |D| − c_e mean H + Σ_t mask (V(s_t) − G_t)² / #steps.

    ``value``: Φ = G_t − V(s_t), the reward-to-go continued by V(final observation) on truncated steps only,
    |D| = the number of trajectories, Adam on the policy (η) and on V (ω). ``average``: Φ = γ^k G_t (absolute
    discounting) minus its mean over the real steps, then standardised over them, |D| = the number of steps
    (``normalization: step``), plain gradient descent."""
    torch.manual_seed(0)
    gamma, lr, value_lr, c_e = 0.9, 0.05, 0.02, 0.01
    if case == "value":
        m = Reinforce(spec, hidden=[8], lr=lr, value_lr=value_lr, gamma=gamma, baseline="value", ent_coef=c_e,
                      ortho_init=False)
    else:
        m = Reinforce(spec, hidden=[8], lr=lr, optimizer="sgd", gamma=gamma, baseline="average",
                      discounting="absolute", normalize_advantage=True, normalization="step", ent_coef=c_e,
                      ortho_init=False)
    attach(m)
    p = params_of(m)
    raw = episodes(spec)
    td = m.process_rollout(raw.clone())

    reward, terminated, truncated, done = flags(raw)
    obs, action, mask = raw["observation"], raw["action"], raw["mask"].float()
    with torch.no_grad():
        if case == "value":
            boot = mlp_value(p, "value", raw["next", "observation"]) * (truncated & ~terminated)
            g = returns_to_go(reward, done, gamma, boot)
            phi = g - mlp_value(p, "value", obs)
            normaliser = 4.0  # trajectories
        else:
            g = returns_to_go(reward, done, gamma, torch.zeros_like(reward))
            phi = gamma ** time_in_episode(done) * g
            phi = phi - masked_mean(phi, mask)  # the average baseline
            centred = phi - masked_mean(phi, mask)
            phi = centred / (masked_mean(centred**2, mask).sqrt() + 1e-8)
            normaliser = 13.0  # real steps
    torch.testing.assert_close(td["phi"], phi)
    torch.testing.assert_close(td["value_target"], g)

    step(m, td.reshape(-1))
    grads = {k: v.grad for k, v in m.named_parameters() if v.grad is not None}
    dist = policy_dist(p, "policy.body", "policy.head", obs, spec)
    loss = -(mask * log_prob(dist, action) * phi).sum() / normaliser - c_e * masked_mean(entropy(dist), mask)
    pg_reference_step(p, grads, loss, case == "value", obs, g, mask, lr, value_lr)
    assert_params(m, p)


@pytest.mark.parametrize(("spec", "kind"), [(DISCRETE, "first_order"), (CONTINUOUS, "per_decision")],
                         ids=["categorical-first-order-sgd", "gaussian-per-decision-value-adam"])
def test_offpg(spec: Spec, kind: str) -> None:
    """Off-policy PG (Rossi Alg. 4.1, eq. 4.4; Atreya §2.1) from a rollout of the behaviour copy β while θ has
    moved away from it: ρ_t = π_θ(a_t|s_t)/π_β(a_t|s_t) and the loss −Σ_t mask · log π_θ(a_t|s_t) Ψ_t / |D|
    (− c_e mean H + Σ_t mask (V(s_t) − G_t)² / #steps with the value baseline), with
    ``first_order``: Ψ_t = ρ_t G_t (no baseline), and ``per_decision``: W_t = Π_{t' ≤ t} ρ_t' within the episode,
    Ψ_t = Σ_{l ≥ t} γ^{l−t} W_l r_l + γ^{end+1−t} W_end V(s'_end) [truncated] − W_t V(s_t). After the rollout's
    last update β ← θ."""
    torch.manual_seed(0)
    gamma, lr, value_lr, c_e = 0.9, 0.05, 0.02, 0.01
    if kind == "first_order":
        m = OffPolicyPG(spec, hidden=[8], lr=lr, optimizer="sgd", gamma=gamma, importance="first_order",
                        ent_coef=c_e, ortho_init=False)
    else:
        m = OffPolicyPG(spec, hidden=[8], lr=lr, value_lr=value_lr, gamma=gamma, importance="per_decision",
                        baseline="value", ent_coef=c_e, ortho_init=False)
    perturb_(m.policy, 0.2, seed=1)  # θ ≠ β
    attach(m)
    p = params_of(m)
    raw = episodes(spec)
    td = m.process_rollout(raw.clone())

    reward, terminated, truncated, done = flags(raw)
    obs, action, mask = raw["observation"], raw["action"], raw["mask"].float()
    with torch.no_grad():
        log_beta = log_prob(policy_dist(p, "behaviour.body", "behaviour.head", obs, spec), action)
        torch.testing.assert_close(td["behaviour_log_prob"], log_beta)
        log_rho = (log_prob(policy_dist(p, "policy.body", "policy.head", obs, spec), action) - log_beta) * mask
        assert log_rho.abs().max() > 0.1
        if kind == "first_order":
            g = returns_to_go(reward, done, gamma, torch.zeros_like(reward))
            psi = log_rho.exp() * g
        else:
            boot = mlp_value(p, "value", raw["next", "observation"]) * (truncated & ~terminated)
            g = returns_to_go(reward, done, gamma, boot)
            w = torch.zeros_like(log_rho)
            for t in range(w.shape[1]):
                w[:, t] = log_rho[:, t] + torch.where(time_in_episode(done)[:, t] > 0, w[:, t - 1], 0.0)
            w = w.exp()
            psi = returns_to_go(w * reward, done, gamma, w * boot) - w * mlp_value(p, "value", obs)
    torch.testing.assert_close(td["value_target"], g)

    step(m, td.reshape(-1))
    grads = {k: v.grad for k, v in m.named_parameters() if v.grad is not None}
    dist = policy_dist(p, "policy.body", "policy.head", obs, spec)
    loss = -(mask * log_prob(dist, action) * psi).sum() / 4.0 - c_e * masked_mean(entropy(dist), mask)
    pg_reference_step(p, grads, loss, kind == "per_decision", obs, g, mask, lr, value_lr)
    with torch.no_grad():
        for k in list(p):
            if k.startswith("behaviour."):
                p[k].copy_(p["policy." + k[len("behaviour."):]])  # β ← θ after the update
    assert_params(m, p)


# === TRPO and NPG =================================================================================================
def conjugate_gradient(a: Tensor, b: Tensor, iterations: int, tol: float) -> Tensor:
    """x ≈ A⁻¹ b by conjugate gradient from x = 0 (Rossi App. B Alg. b.1), stopping after ``iterations``
    products or once ‖r‖² ≤ ``tol``."""
    x, r = torch.zeros_like(b), b.clone()
    d, rr = r.clone(), r.dot(r)
    for _ in range(iterations):
        if rr <= tol:
            break
        ad = a @ d
        alpha = rr / d.dot(ad)
        x, r = x + alpha * d, r - alpha * ad
        rr_next = r.dot(r)
        d, rr = r + (rr_next / rr) * d, rr_next
    return x


@pytest.mark.parametrize(("cls", "spec"), [(TRPO, DISCRETE), (NPG, CONTINUOUS)], ids=["trpo-categorical",
                                                                                    "npg-gaussian"])
def test_trpo_npg(cls: type[TRPO], spec: Spec) -> None:
    """TRPO (Rossi Alg. 7.1) and NPG (Alg. 6.1) with GAE advantages from ``process_rollout``, standardised:
    g = ∇ mean(π_θ'(a|s)/π_θ(a|s) Â) at θ' = θ; F the Hessian of the mean KL(π_θ ‖ π_θ') at θ' = θ, formed
    explicitly here; x by CG on (F + c I) x = g; Δ = sqrt(2δ / xᵀ(F + c I)x) x. NPG takes θ + Δ; TRPO the first
    θ + b^j Δ whose mean KL ≤ δ and whose surrogate improved (else θ). Then the critic: ``critic_epochs`` passes of
    Adam steps on mean (V(s) − V_targ)² over shuffled minibatches drawn from the rollout's generator
    (seeded from the run's seed and the rollout index)."""
    seed = 3
    torch.manual_seed(seed)
    gamma, lam, delta, damping, b, critic_lr = 0.9, 0.95, 0.3, 0.01, 0.8, 0.01
    m = cls(spec, hidden=[8], max_kl=delta, damping=damping, backtrack_coef=b, cg_iterations=5, gamma=gamma,
            gae_lambda=lam, critic_lr=critic_lr, critic_epochs=2, critic_minibatch_size=6, ortho_init=False)
    attach(m)
    p = params_of(m.net)
    raw = rollout(spec)
    td = m.process_rollout(raw.clone())

    reward, terminated, _, done = flags(raw)
    with torch.no_grad():
        v = ac_value(p, raw["observation"])
        adv = gae(reward, v, ac_value(p, raw["next", "observation"]), terminated, done, gamma, lam)
    torch.testing.assert_close(td["advantage"], adv)
    torch.testing.assert_close(td["value_target"], adv + v)

    step(m, td.reshape(-1))
    grads = {k: v.grad for k, v in m.net.named_parameters() if v.grad is not None}

    obs, action = raw["observation"].reshape(-1, spec.obs_dim), raw["action"].flatten(0, 1)
    a_n = standardise(adv.reshape(-1))
    actor = [k for k in p if k.startswith(("actor_body.", "head."))]
    sizes = [p[k].numel() for k in actor]

    def policy_at(theta: Tensor) -> tuple[Tensor, ...]:
        q = dict(p)
        q.update({k: t.view_as(p[k]) for k, t in zip(actor, theta.split(sizes), strict=True)})
        return ac_policy(q, obs, spec)

    theta = torch.cat([p[k].detach().reshape(-1) for k in actor])
    old = tuple(t.detach() for t in policy_at(theta))
    old_logp = log_prob(old, action)

    def surrogate(theta: Tensor) -> Tensor:
        return ((log_prob(policy_at(theta), action) - old_logp).exp() * a_n).mean()

    g = torch.func.grad(surrogate)(theta)
    fisher = torch.autograd.functional.hessian(lambda t: kl(old, policy_at(t)).mean(), theta)
    a = fisher + damping * torch.eye(len(theta))
    x = conjugate_gradient(a, g, 5, 1e-10)
    full = torch.sqrt(2 * delta / x.dot(a @ x)) * x
    new = theta + full
    if cls is TRPO:
        with torch.no_grad():
            s0 = surrogate(theta)
            fractions = [b**j for j in range(11)]
            accepted = [f for f in fractions
                        if kl(old, policy_at(theta + f * full)).mean() <= delta and surrogate(theta + f * full) > s0]
        assert accepted and accepted[0] < 1, "the test should exercise the backtracking"
        new = theta + accepted[0] * full
    with torch.no_grad():
        for k, t in zip(actor, new.split(sizes), strict=True):
            p[k].copy_(t.view_as(p[k]))

    critic = [k for k in p if k.startswith(("critic_body.", "value_out."))]
    assert sorted(actor + critic) == sorted(p)
    opt = adam(p, critic, critic_lr, eps=1e-5)
    gen = torch.Generator().manual_seed(seed * 1_000_003 + 0)  # rollout 0
    target = (adv + v).reshape(-1)
    for _ in range(2):
        for idx in torch.randperm(12, generator=gen).split(6):
            last = reference_step(opt, p, critic, ((ac_value(p, obs[idx]) - target[idx]) ** 2).mean())
    assert_grads(grads, critic, last)  # the last minibatch's
    assert_params(m.net, p)

def gae_rollout(m: Any, spec: Spec, gamma: float, lam: float
                ) -> tuple[TensorDict, TensorDict, tuple[Tensor, ...], Tensor, Tensor]:
    """A rollout sampled by the actor-critic's current (old) policy, annotated by the module's ``process_rollout``,
    with its GAE advantages and λ-return targets checked against a hand computation (Rossi ch. 5).
    Returns (raw rollout, annotated rollout, old policy distribution, advantages, old values)."""
    old = params_of(m.net)
    raw = rollout(spec)
    with torch.no_grad():
        old_dist = ac_policy(old, raw["observation"], spec)
        raw["sample_log_prob"] = log_prob(old_dist, raw["action"])
    td = m.process_rollout(raw.clone())
    reward, terminated, _, done = flags(raw)
    with torch.no_grad():
        v_old = ac_value(old, raw["observation"])
        adv = gae(reward, v_old, ac_value(old, raw["next", "observation"]), terminated, done, gamma, lam)
    torch.testing.assert_close(td["advantage"], adv)
    torch.testing.assert_close(td["value_target"], adv + v_old)
    return raw, td, old_dist, adv, v_old

