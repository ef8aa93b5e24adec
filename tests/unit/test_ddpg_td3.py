"""DDPG and TD3 maths: targets (terminated vs truncated), Polyak updates, target policy
smoothing, twin critics regressing to one y, delayed actor and target updates, the actor gradient (the DPG, through
Q1 only, critics untouched), equality with TorchRL's ``DDPGLoss`` / ``TD3Loss``, and the exploration noise
(bounds, Ornstein-Uhlenbeck state reset at episode ends through the collector, and restored from its state)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.modules import ValueOperator
from torchrl.objectives import DDPGLoss, TD3Loss

from lrl.algos.ddpg.loss import critic_target
from lrl.algos.ddpg.module import DDPG
from lrl.algos.td3.loss import smoothed_target_action, twin_critic_target
from lrl.algos.td3.module import TD3
from lrl.contract import Batch
from lrl.data.collector import VecEnvCollector
from lrl.data.env import make_vec_env, probe_env_spec
from lrl.estimators.losses import deterministic_actor_loss, q_regression_loss
from lrl.networks.deterministic import (
    DeterministicActorCritic,
    GaussianNoise,
    NoisyDeterministicPolicy,
    OrnsteinUhlenbeckNoise,
    noise_std,
)
from lrl.recipe.schema import EnvConfig
from lrl.spec import EnvSpec

SPEC = EnvSpec("Toy-v0", (3,), "continuous", 2, (-2.0, -1.0), (2.0, 1.0))
UNIT = EnvSpec("Unit-v0", (3,), "continuous", 2, (-1.0, -1.0), (1.0, 1.0))


def _batch(n: int, spec: EnvSpec = SPEC, seed: int = 0) -> TensorDict:
    g = torch.Generator().manual_seed(seed)
    low, high = torch.tensor(spec.action_low), torch.tensor(spec.action_high)
    terminated = torch.rand(n, generator=g) < 0.3
    truncated = (torch.rand(n, generator=g) < 0.3) & ~terminated
    return TensorDict({
        "observation": torch.randn(n, 3, generator=g),
        "action": low + (high - low) * torch.rand(n, 2, generator=g),
        "next": {"observation": torch.randn(n, 3, generator=g), "reward": torch.randn(n, 1, generator=g),
                 "terminated": terminated[:, None], "truncated": truncated[:, None],
                 "done": (terminated | truncated)[:, None]},
    }, [n])


def _perturb_(net: nn.Module, scale: float = 0.1) -> None:
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn_like(p))


# --- targets and losses --------------------------------------------------------------------------------------
def test_critic_target_bootstraps_through_truncation_not_termination() -> None:
    reward = torch.tensor([1.0, 2.0, 3.0])
    next_q = torch.tensor([10.0, 20.0, 30.0])
    terminated = torch.tensor([False, True, False])  # the third transition was truncated: it still bootstraps
    y = critic_target(reward, terminated, next_q, gamma=0.5)
    torch.testing.assert_close(y, torch.tensor([1.0 + 5.0, 2.0, 3.0 + 15.0]))
    twin = twin_critic_target(reward, terminated, torch.stack([next_q, torch.tensor([4.0, 50.0, 60.0])]), 0.5)
    torch.testing.assert_close(twin, torch.tensor([1.0 + 2.0, 2.0, 3.0 + 15.0]))  # min per sample, then y


def test_target_smoothing_noise_is_clipped_and_actions_stay_in_bounds() -> None:
    low, high = torch.tensor([-2.0, -1.0]), torch.tensor([2.0, 1.0])
    mu = torch.tensor([[1.9, 0.0], [0.0, -0.95], [-1.0, 0.5]])
    noise = torch.tensor([[0.3, 5.0], [-7.0, -0.2], [0.1, -0.05]])
    c = torch.tensor([0.5, 0.25])  # clip as a fraction of each dimension's half-range (0.25 of 2 and of 1)
    a = smoothed_target_action(mu, noise, c, low, high)
    expected = torch.tensor([[2.0, 0.25], [-0.5, -1.0], [-0.9, 0.45]])  # noise → [-c, c], then a' → [low, high]
    torch.testing.assert_close(a, expected)
    big = smoothed_target_action(mu.expand(1000, 3, 2).reshape(-1, 2), 10 * torch.randn(3000, 2), c, low, high)
    assert (big >= low).all() and (big <= high).all()
    assert ((big - mu.repeat(1000, 1)).abs() <= c + 1e-6).all()  # never further than c from μ'(s')


def test_td3_target_by_hand_with_fixed_noise() -> None:
    """y = r + γ (1 − term) min_i Q_i'(s', clip(μ'(s') + clip(σ̃ h ε, −c h, c h), low, high)), all by hand."""
    torch.manual_seed(0)
    m = TD3(SPEC, hidden=[8], gamma=0.9, target_policy_noise=0.2, target_noise_clip=0.5)
    _perturb_(m.ac.actor_target), _perturb_(m.ac.critic_target)
    td = _batch(64)
    eps = torch.randn(64, 2) * 2
    out = m._compute_critic_loss(td["observation"], td["action"], td["next", "reward"].squeeze(-1),
                                 td["next", "observation"], td["next", "terminated"].squeeze(-1), eps)
    h = torch.tensor([2.0, 1.0])
    ys = []
    for i in range(64):
        s1 = td["next", "observation"][i]
        mu = m.ac.actor_target(s1[None])[0]
        a1 = [float(min(max(mu[d] + min(max(0.2 * h[d] * eps[i, d], -0.5 * h[d]), 0.5 * h[d]),
                            SPEC.action_low[d]), SPEC.action_high[d])) for d in range(2)]  # type: ignore[index]
        x = torch.cat([s1, torch.tensor(a1)])
        q_next = min(float(net(x)) for net in m.ac.critic_target.nets)  # type: ignore[attr-defined]
        r, term = float(td["next", "reward"][i]), bool(td["next", "terminated"][i])
        ys.append(r + (0.0 if term else 0.9 * q_next))
    torch.testing.assert_close(out["y"], torch.tensor(ys).mean())
    q = m.ac.critic(td["observation"], td["action"]).detach()
    y = torch.tensor(ys)
    torch.testing.assert_close(out["loss"], ((q[0] - y) ** 2).mean() + ((q[1] - y) ** 2).mean())


def test_both_critics_regress_to_the_same_target() -> None:
    torch.manual_seed(1)
    q = torch.randn(2, 16, requires_grad=True)
    y = torch.randn(16)
    q_regression_loss(q, y).backward()
    assert q.grad is not None
    torch.testing.assert_close(q.grad, 2 * (q.detach() - y) / 16)  # ∂/∂q_i of mean (q_i − y)²: one y for both
    # and in the module: the gradient of each critic is that of its own squared error against the one y
    m = TD3(SPEC, hidden=[8])
    td = _batch(32)
    args = (td["observation"], td["action"], td["next", "reward"].squeeze(-1), td["next", "observation"],
            td["next", "terminated"].squeeze(-1), torch.zeros(32, 2))
    m._compute_critic_loss(*args)["loss"].backward()
    with torch.no_grad():
        nxt = td["next", "observation"]
        y = twin_critic_target(args[2], args[4], m.ac.critic_target(nxt, m.ac.actor_target(nxt)), m.hp.gamma)
    x = torch.cat([td["observation"], td["action"]], -1)
    for net in m.ac.critic.nets:
        ref = [torch.autograd.grad(((net(x).squeeze(-1) - y) ** 2).mean(), p)[0] for p in net.parameters()]
        for p, g in zip(net.parameters(), ref, strict=True):
            torch.testing.assert_close(p.grad, g)


def test_actor_gradient_is_the_deterministic_policy_gradient_through_q1_only() -> None:
    """∇_θ of −mean Q1(s, μ_θ(s)) equals −mean J_μ(s)ᵀ ∇_a Q1(s, a)|a=μ(s) (Rossi eq. 9.10), computed with
    explicit Jacobians; the critics (Q2 included) get no gradient."""
    torch.manual_seed(2)
    m = TD3(SPEC, hidden=[6])
    obs = torch.randn(5, 3)
    loss = m._compute_actor_loss(obs)
    loss.backward()
    assert all(p.grad is None for p in m.ac.critic.parameters())
    assert all(p.grad is None for p in m.ac.critic_target.parameters())
    params = dict(m.ac.actor.named_parameters())
    expected = {k: torch.zeros_like(v) for k, v in params.items()}
    q1 = m.ac.critic.nets[0]
    for s in obs:
        a = m.ac.actor(s[None])[0].detach().requires_grad_(True)
        dq_da = torch.autograd.grad(q1(torch.cat([s, a]))[0], a)[0]
        jac = torch.autograd.functional.jacobian(
            lambda *ps, s=s: torch.func.functional_call(m.ac.actor, dict(zip(params, ps, strict=True)), (s[None],))[0],
            tuple(params.values()))
        for (k, v), j in zip(params.items(), jac, strict=True):
            expected[k] -= (dq_da.view(-1, *([1] * v.dim())) * j).sum(0) / len(obs)
    for k, p in params.items():
        torch.testing.assert_close(p.grad, expected[k])


def test_polyak_updates_are_exact_with_separate_coefficients() -> None:
    torch.manual_seed(3)
    ac = DeterministicActorCritic(SPEC, [8], n_critics=2)
    assert not any(p.requires_grad for p in (*ac.actor_target.parameters(), *ac.critic_target.parameters()))
    for a, b in zip(ac.actor.parameters(), ac.actor_target.parameters(), strict=True):
        assert torch.equal(a, b)  # θ' ← θ at the start (Alg. 9.4)
    _perturb_(ac.actor, 1.0), _perturb_(ac.critic, 1.0)
    old_actor = [p.clone() for p in ac.actor_target.parameters()]
    old_critic = [p.clone() for p in ac.critic_target.parameters()]
    ac.update_targets_(critic_tau=0.01, actor_tau=0.2)  # the seed's ς = 0.99, ζ = 0.8
    for t, o, n in zip(ac.critic_target.parameters(), old_critic, ac.critic.parameters(), strict=True):
        torch.testing.assert_close(t, 0.99 * o + 0.01 * n)
    for t, o, n in zip(ac.actor_target.parameters(), old_actor, ac.actor.parameters(), strict=True):
        torch.testing.assert_close(t, 0.8 * o + 0.2 * n)


# --- the update loop: delays, which parameters move ----------------------------------------------------------
def _manual(m: Any) -> None:
    """Run ``training_step`` outside a Trainer: plain backward and the module's own two optimisers."""
    opts = [torch.optim.Adam(m.ac.actor.parameters(), lr=1e-2), torch.optim.Adam(m.ac.critic.parameters(), lr=1e-2)]
    m.optimizers = lambda: opts
    m.manual_backward = lambda loss: loss.backward()


def _stream(n: int) -> Iterator[tuple[Batch, int, int]]:
    for i in range(n):
        yield Batch(_batch(32, seed=i), 1000 + i, 0.5, i, True), i, 0


def _snapshot(net: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


def _changed(net: nn.Module, before: list[torch.Tensor]) -> bool:
    return any(not torch.equal(p, b) for p, b in zip(net.parameters(), before, strict=True))


@pytest.mark.parametrize("delay", [2, 3])
def test_td3_actor_and_targets_change_only_every_d_critic_updates(delay: int) -> None:
    torch.manual_seed(4)
    m = TD3(SPEC, hidden=[8], policy_delay=delay)
    _manual(m)
    stream = _stream(3 * delay)
    for n in range(1, 3 * delay + 1):
        nets = {name: getattr(m.ac, name) for name in ("actor", "actor_target", "critic", "critic_target")}
        before = {name: _snapshot(net) for name, net in nets.items()}
        m.training_step(stream)
        assert m.updates == n
        assert _changed(m.ac.critic, before["critic"])  # the critics learn at every step
        for name in ("actor", "actor_target", "critic_target"):
            assert _changed(nets[name], before[name]) == (n % delay == 0), (name, n)


def test_ddpg_step_updates_everything_and_matches_the_equations() -> None:
    """One DDPG iteration by hand (Alg. 9.4): critic Adam step on (Q − y)², actor Adam step on −Q(s, μ(s)) with the
    updated critic, then both Polyak updates."""
    torch.manual_seed(5)
    m = DDPG(SPEC, hidden=[8], gamma=0.9, tau=0.1, actor_tau=0.3)
    _perturb_(m.ac.actor_target), _perturb_(m.ac.critic_target)
    ref = DeterministicActorCritic(SPEC, [8])
    ref.load_state_dict(m.ac.state_dict())
    _manual(m)
    td = _batch(32, seed=0)
    m.training_step(_stream(1))
    a_opt, c_opt = torch.optim.Adam(ref.actor.parameters(), lr=1e-2), torch.optim.Adam(ref.critic.parameters(), lr=1e-2)
    with torch.no_grad():
        nxt = td["next", "observation"]
        y = td["next", "reward"].squeeze(-1) + 0.9 * (~td["next", "terminated"].squeeze(-1)).float() * \
            ref.critic_target(nxt, ref.actor_target(nxt))[0]
    ((ref.critic(td["observation"], td["action"])[0] - y) ** 2).mean().backward()
    c_opt.step()
    ref.critic.zero_grad()
    (-ref.critic(td["observation"], ref.actor(td["observation"]))[0].mean()).backward()
    a_opt.step()
    ref.update_targets_(0.1, 0.3)
    for (k, a), b in zip(m.ac.state_dict().items(), ref.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=k)


# --- equality with TorchRL's losses ---------------------------------------------------------------------------
class _Q1(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, action], -1))


def _weights(params: TensorDict) -> list[torch.Tensor]:
    """The weights and biases of a TorchRL loss's functional parameters, in module order (buffers left out)."""
    flat = params.flatten_keys(".")
    return [flat[k] for k in list(flat.keys()) if k.endswith(("weight", "bias"))]


def _copy_(ours: list[torch.Tensor], theirs: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for a, b in zip(ours, theirs, strict=True):
            a.copy_(b.reshape(a.shape))


def _perturb_all_(*groups: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for group in groups:
            for p in group:
                p.add_(0.2 * torch.randn_like(p))


def test_ddpg_losses_equal_torchrl_ddpg_loss() -> None:
    torch.manual_seed(6)
    m = DDPG(SPEC, hidden=[16], gamma=0.9)
    actor = TensorDictModule(m.ac.actor, in_keys=["observation"], out_keys=["action"])
    value = ValueOperator(_Q1(m.ac.critic.nets[0]), in_keys=["observation", "action"])
    theirs = DDPGLoss(actor, value, loss_function="l2", delay_actor=True, delay_value=True)
    theirs.make_value_estimator(gamma=0.9)
    # target networks that differ from the online ones
    _perturb_all_(_weights(theirs.target_actor_network_params), _weights(theirs.target_value_network_params))
    _copy_(list(m.ac.actor_target.parameters()), _weights(theirs.target_actor_network_params))
    _copy_(list(m.ac.critic_target.parameters()), _weights(theirs.target_value_network_params))
    td = _batch(64)
    expected = theirs(td.clone())
    out = m._compute_critic_loss(td["observation"], td["action"], td["next", "reward"].squeeze(-1),
                                 td["next", "observation"], td["next", "terminated"].squeeze(-1))
    torch.testing.assert_close(out["loss"], expected["loss_value"])
    torch.testing.assert_close(m._compute_actor_loss(td["observation"]), expected["loss_actor"])


def test_td3_losses_equal_torchrl_td3_loss() -> None:
    """Same batch, same parameters, same smoothing noise (TorchRL draws ε with ``torch.randn_like(action)``
    first thing in ``value_loss``; bounds [-1, 1], so the half-range scale is 1)."""
    torch.manual_seed(7)
    m = TD3(UNIT, hidden=[16], gamma=0.9, target_policy_noise=0.3, target_noise_clip=0.4)
    actor = TensorDictModule(m.ac.actor, in_keys=["observation"], out_keys=["action"])
    value = ValueOperator(_Q1(m.ac.critic.nets[0]), in_keys=["observation", "action"])
    theirs = TD3Loss(actor, value, bounds=(-1.0, 1.0), num_qvalue_nets=2, policy_noise=0.3, noise_clip=0.4,
                     loss_function="l2")
    theirs.make_value_estimator(gamma=0.9)
    _perturb_all_(_weights(theirs.target_actor_network_params), _weights(theirs.target_qvalue_network_params),
                  _weights(theirs.qvalue_network_params))
    for i in range(2):
        _copy_(list(m.ac.critic.nets[i].parameters()), [p[i] for p in _weights(theirs.qvalue_network_params)])
        _copy_(list(m.ac.critic_target.nets[i].parameters()),  # type: ignore[index]
               [p[i] for p in _weights(theirs.target_qvalue_network_params)])
    _copy_(list(m.ac.actor_target.parameters()), _weights(theirs.target_actor_network_params))
    td = _batch(64, UNIT)
    torch.manual_seed(123)
    expected = theirs(td.clone())
    torch.manual_seed(123)
    eps = torch.randn_like(td["action"])
    assert (eps.abs() * 0.3 > 0.4).any(), "the batch should exercise the noise clip"
    out = m._compute_critic_loss(td["observation"], td["action"], td["next", "reward"].squeeze(-1),
                                 td["next", "observation"], td["next", "terminated"].squeeze(-1), eps)
    torch.testing.assert_close(out["loss"], expected["loss_qvalue"])
    torch.testing.assert_close(m._compute_actor_loss(td["observation"]), expected["loss_actor"])
    obs = td["observation"]
    torch.testing.assert_close(deterministic_actor_loss(m.ac.critic.q1(obs, m.ac.actor(obs))), expected["loss_actor"])


# --- exploration ----------------------------------------------------------------------------------------------
def test_noise_only_on_collection_actions_clipped_to_bounds() -> None:
    torch.manual_seed(8)
    obs = torch.randn(4000, 3)
    low, high = torch.tensor(SPEC.action_low), torch.tensor(SPEC.action_high)
    m = TD3(SPEC, hidden=[8], exploration_std=0.1)
    mu = m.act(obs)
    half, centre = (high - low) / 2, (high + low) / 2
    inside = ((mu - centre).abs() < 0.5 * half).all(-1)  # 5σ from both bounds: clipping never bites there
    assert inside.sum() > 1000
    action = m.collection_policy()(obs, torch.Generator().manual_seed(0))["action"]
    noise = ((action - mu) / half)[inside]  # in units of the half-range
    torch.testing.assert_close(noise.std(0), torch.full((2,), 0.1), atol=0.006, rtol=0)
    torch.testing.assert_close(noise.mean(0), torch.zeros(2), atol=0.01, rtol=0)
    assert torch.equal(m.act(obs), mu)  # evaluation is deterministic: μ_θ(s), no noise
    wild = TD3(SPEC, hidden=[8], exploration_std=5.0).collection_policy()(obs, torch.Generator().manual_seed(0))
    assert (wild["action"] >= low).all() and (wild["action"] <= high).all()  # clipped: stored = applied
    assert ((wild["action"] == low) | (wild["action"] == high)).float().mean() > 0.5


def test_noise_std_schedule() -> None:
    assert noise_std(0, 0.3, None, 100) == 0.3
    assert noise_std(50, 0.3, 0.1, 100) == pytest.approx(0.2)
    assert noise_std(500, 0.3, 0.1, 100) == pytest.approx(0.1)


def test_ornstein_uhlenbeck_recursion_and_reset() -> None:
    ou = OrnsteinUhlenbeckNoise(theta=0.15, dt=0.01)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    like = torch.zeros(3, 2)
    x = torch.zeros(3, 2)
    for _ in range(5):
        x = x + 0.15 * (0 - x) * 0.01 + 0.1 * torch.randn(3, 2, generator=g2)
        torch.testing.assert_close(ou.sample(like, g1), x)
    ou.reset(torch.tensor([False, True, False]))
    assert ou.x is not None and (ou.x[1] == 0).all() and (ou.x[0] != 0).all()
    state = ou.state_dict()
    other = OrnsteinUhlenbeckNoise()
    other.load_state_dict(state)
    torch.testing.assert_close(other.sample(like, torch.Generator().manual_seed(1)),
                               ou.sample(like, torch.Generator().manual_seed(1)))
    assert GaussianNoise().state_dict() == {}


def _ou_collector(policy: Any) -> VecEnvCollector:
    cfg = EnvConfig(id="Pendulum-v1", num_envs=2, max_episode_steps=5)
    spec = probe_env_spec(cfg)
    return VecEnvCollector(make_vec_env(cfg, 2), spec, policy, steps_per_env=7, env_seeds=[0, 1])


def test_collector_resets_ou_state_at_episode_ends_and_restores_it() -> None:
    torch.manual_seed(9)
    spec = probe_env_spec(EnvConfig(id="Pendulum-v1"))
    m = DDPG(spec, hidden=[8], exploration="ou", exploration_std=1.0, ou_theta=0.15, ou_dt=0.01)
    policy = m.collection_policy()
    assert isinstance(policy, NoisyDeterministicPolicy) and isinstance(policy.noise, OrnsteinUhlenbeckNoise)
    resets: list[np.ndarray] = []
    after: list[torch.Tensor] = []
    real_reset = policy.reset

    def spy(done: torch.Tensor) -> None:
        resets.append(done.numpy().copy())
        real_reset(done)
        after.append(policy.noise.x.clone())  # type: ignore[union-attr]

    policy.reset = spy  # type: ignore[method-assign]
    c = _ou_collector(policy)
    td = c.rollout()
    done = td["next", "done"].squeeze(-1)
    assert len(resets) == int(done.any(0).sum()) == 1  # episodes of 5 steps end together, once in 7 steps
    np.testing.assert_array_equal(resets[0], [True, True])
    assert (after[0] == 0).all()  # the next episode's noise process starts from 0
    assert (td["action"][:, 6] != m.ac.actor(td["observation"][:, 6])).all()  # and runs on after the reset
    # exact continuation: the exploration state is part of the collector's state
    state = c.state_dict()
    assert state["exploration"] is not None and state["exploration"]["x"] is not None
    expected = c.rollout()
    m2 = DDPG(spec, hidden=[8], exploration="ou", exploration_std=1.0)
    m2.ac.load_state_dict(m.ac.state_dict())
    c2 = _ou_collector(m2.collection_policy())
    c2.load_state_dict(state)
    got = c2.rollout()
    torch.testing.assert_close(got["action"], expected["action"])


def test_continuous_only() -> None:
    assert DDPG.consumes.actions == ("continuous",) and TD3.consumes.actions == ("continuous",)
    with pytest.raises(ValueError, match="continuous"):
        DDPG(EnvSpec("D-v0", (3,), "discrete", 2), hidden=[4])
