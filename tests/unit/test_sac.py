"""SAC maths: the soft target by hand (−α log π inside the discount, min over
both target critics, termination vs truncation), the critic and actor losses, the temperature loss's direction,
which parameters each loss moves, the Polyak schedule, and equality with TorchRL's ``SACLoss`` (v2, no value
network) on the same batch and the same noise."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.data import Bounded
from torchrl.modules import ProbabilisticActor, ValueOperator
from torchrl.modules.distributions import TanhNormal
from torchrl.objectives import SACLoss

from lrl.algos.sac.loss import actor_loss, alpha_loss, critic_loss, soft_q_target
from lrl.algos.sac.module import SAC
from lrl.networks import mlp
from lrl.spec import EnvSpec

SPEC = EnvSpec("Toy-v0", (3,), "continuous", 2, (-1.0, -1.0), (1.0, 1.0))
PENDULUM = EnvSpec("Pendulum-v1", (3,), "continuous", 1, (-2.0,), (2.0,))


def _batch(n: int = 32, obs_dim: int = 3, act_dim: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    terminated = torch.rand(n, generator=g) < 0.3
    return {"obs": torch.randn(n, obs_dim, generator=g), "action": torch.rand(n, act_dim, generator=g) * 2 - 1,
            "reward": torch.randn(n, generator=g), "next_obs": torch.randn(n, obs_dim, generator=g),
            "terminated": terminated, "truncated": (torch.rand(n, generator=g) < 0.3) & ~terminated}


def _perturb_targets(m: SAC, scale: float = 0.2) -> None:
    with torch.no_grad():
        for p in m.critic_target.parameters():
            p.add_(scale * torch.randn_like(p))


def test_soft_q_target_by_hand() -> None:
    """y = r + γ(1 − term)(min(Q'_1, Q'_2) − α log π(a'|s')), the corrected eq. 11.5."""
    reward = torch.tensor([1.0, 2.0, 3.0])
    next_q = torch.tensor([[1.0, 5.0, 2.0], [3.0, 4.0, 0.0]])  # min over the two target critics: 1, 4, 0
    next_logp = torch.tensor([0.5, -1.0, 2.0])
    terminated = torch.tensor([False, True, False])  # the third one is a truncation: it still bootstraps
    y = soft_q_target(reward, terminated, next_q, next_logp, alpha=0.2, gamma=0.9)
    torch.testing.assert_close(y, torch.tensor([1 + 0.9 * (1 - 0.1), 2.0, 3 + 0.9 * (0 - 0.4)]))
    # α = 0: the clipped double-Q target of TD3 with a stochastic next action
    plain = soft_q_target(reward, terminated, next_q, next_logp, alpha=0.0, gamma=0.9)
    torch.testing.assert_close(plain, torch.tensor([1 + 0.9 * 1.0, 2.0, 3 + 0.9 * 0.0]))


def test_critic_actor_alpha_losses_by_hand() -> None:
    q = torch.tensor([[1.0, 2.0, 0.0], [3.0, -1.0, 0.5]])
    y = torch.tensor([2.0, 0.0, 1.0])
    expected = 0.5 * ((1 + 4 + 1) / 3 + (1 + 1 + 0.25) / 3)
    assert critic_loss(q, y).item() == pytest.approx(expected)
    logp = torch.tensor([0.5, -1.0, 2.0])
    # twin min per sample: 1, −1, 0
    assert actor_loss(q, logp, 0.1).item() == pytest.approx(((0.05 - 1) + (-0.1 + 1) + (0.2 - 0)) / 3)
    log_alpha = torch.tensor(math.log(0.5))
    assert alpha_loss(log_alpha, logp, -2.0).item() == pytest.approx(-math.log(0.5) * ((0.5 - 2 - 1 - 2 + 2 - 2) / 3))


@pytest.mark.parametrize(("log_prob", "direction"), [(2.0, 1), (-3.0, -1)])
def test_temperature_rises_when_entropy_is_below_target_and_falls_above(log_prob: float, direction: int) -> None:
    """Target entropy −1: entropy −E[log π] = −2 < −1 must raise α; entropy 3 > −1 must lower it."""
    log_alpha = torch.zeros((), requires_grad=True)
    opt = torch.optim.SGD([log_alpha], lr=0.1)
    alpha_loss(log_alpha, torch.full((64,), log_prob), target_entropy=-1.0).backward()
    opt.step()
    assert torch.sign(log_alpha.detach()).item() == direction


def test_target_uses_target_critics_fresh_policy_sample_and_is_detached() -> None:
    torch.manual_seed(0)
    m = SAC(SPEC, hidden=[16, 16], gamma=0.9)
    _perturb_targets(m)
    b = _batch()
    alpha = torch.tensor(0.3)
    torch.manual_seed(5)
    y = m.soft_target(b["reward"], b["next_obs"], b["terminated"], alpha)
    assert not y.requires_grad
    torch.manual_seed(5)  # the same a' drawn again, evaluated by hand with the *target* critics
    with torch.no_grad():
        a_next, logp_next = m.policy_sample(b["next_obs"])
        qs = [m.critic_target(torch.cat([b["next_obs"], a_next], -1))[i, :, 0] for i in range(2)]
    expected = b["reward"] + 0.9 * (~b["terminated"]).float() * (torch.minimum(*qs) - 0.3 * logp_next)
    torch.testing.assert_close(y, expected)
    with torch.no_grad():  # the online critics play no part in the target
        for p in m.critic.parameters():
            p.add_(1.0)
    torch.manual_seed(5)
    torch.testing.assert_close(m.soft_target(b["reward"], b["next_obs"], b["terminated"], alpha), y)


def test_each_loss_moves_only_its_own_parameters() -> None:
    """One backward of the sum equals three separate steps: critic loss → critics only (the target is a
    constant), actor loss → actor only (critics detached, gradient through ã), temperature loss → log α only."""
    torch.manual_seed(1)
    m = SAC(SPEC, hidden=[16, 16])
    _perturb_targets(m)
    b = _batch()
    out = m._compute_loss(b["obs"], b["action"], b["reward"], b["next_obs"], b["terminated"])
    actor, critic = list(m.actor.parameters()), list(m.critic.parameters())
    groups = {"actor": actor, "critic": critic, "alpha": [m.log_alpha]}
    for name, loss in (("critic", out["loss/critic"]), ("actor", out["loss/actor"]), ("alpha", out["loss/alpha"])):
        for other, params in groups.items():
            grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
            moved = any(g is not None and g.abs().sum() > 0 for g in grads)
            assert moved == (other == name), f"loss/{name} and the {other} parameters"
    assert all(not p.requires_grad for p in m.critic_target.parameters())
    total = torch.autograd.grad(out["loss"], actor + critic, retain_graph=True)
    parts = (torch.autograd.grad(out["loss/actor"], actor, retain_graph=True)
             + torch.autograd.grad(out["loss/critic"], critic))
    for t, p in zip(total, parts, strict=True):
        torch.testing.assert_close(t, p)


def test_actor_gradient_is_reparameterised_through_the_twin_min() -> None:
    """d loss/dθ flows through ã = tanh(μ + σε) into min(Q1, Q2): the same as autograd of the loss written out."""
    torch.manual_seed(2)
    m = SAC(SPEC, hidden=[16, 16], alpha=0.2, autotune_alpha=False)
    obs = torch.randn(16, 3)
    torch.manual_seed(9)
    action, logp = m.policy_sample(obs)
    q = m.q_values(obs, action)  # not frozen: written out, then compared on the actor parameters only
    by_hand = (0.2 * logp - torch.minimum(q[0], q[1])).mean()
    g_hand = torch.autograd.grad(by_hand, list(m.actor.parameters()))
    torch.manual_seed(9)
    action, logp = m.policy_sample(obs)
    g_loss = torch.autograd.grad(actor_loss(m.q_values(obs, action, frozen=True), logp, 0.2),
                                 list(m.actor.parameters()))
    for a, b in zip(g_hand, g_loss, strict=True):
        torch.testing.assert_close(a, b)
    assert any(g.abs().sum() > 0 for g in g_loss)


def test_fixed_temperature_is_a_buffer_and_has_no_loss() -> None:
    m = SAC(SPEC, hidden=[8], alpha=0.05, autotune_alpha=False)
    assert "log_alpha" in dict(m.named_buffers()) and "log_alpha" not in dict(m.named_parameters())
    b = _batch()
    out = m._compute_loss(b["obs"], b["action"], b["reward"], b["next_obs"], b["terminated"])
    assert "loss/alpha" not in out and out["stats/alpha"].item() == pytest.approx(0.05)
    assert SAC(SPEC, hidden=[8]).target_entropy == -2.0  # −|A| by default


@pytest.mark.parametrize("every", [1, 3])
def test_polyak_update_after_every_nth_step(every: int) -> None:
    m = SAC(SPEC, hidden=[8], tau=0.1, target_update_every=every)
    trainer = SimpleNamespace(global_step=0)
    m.trainer = trainer  # type: ignore[assignment]
    for step in range(6):
        with torch.no_grad():
            for p in m.critic.parameters():
                p.add_(0.5)  # an "update"
        before = [t.clone() for t in m.critic_target.parameters()]
        trainer.global_step = step  # optimiser steps completed before this one
        m.optimizer_step(0, step, SimpleNamespace(step=lambda closure: None), None)
        updated = (step + 1) % every == 0
        for t, b, o in zip(m.critic_target.parameters(), before, m.critic.parameters(), strict=True):
            torch.testing.assert_close(t, 0.9 * b + 0.1 * o if updated else b)


def test_collection_policy_and_deterministic_act_respect_the_bounds() -> None:
    m = SAC(PENDULUM, hidden=[16])
    with torch.no_grad():
        m.actor.head.mean.bias.fill_(30.0)  # a saturated policy still acts within the bounds
    obs = torch.randn(500, 3)
    actions = m.collection_policy()(obs, torch.Generator().manual_seed(0))["action"]
    assert actions.shape == (500, 1) and actions.abs().max() <= 2.0
    torch.testing.assert_close(m.act(obs), torch.full((500, 1), 2.0))
    m2 = SAC(PENDULUM, hidden=[16])
    act = m2.act(obs)
    torch.testing.assert_close(act, 2.0 * torch.tanh(m2.actor(obs)[0]))
    torch.manual_seed(4)
    _, logp = m2.policy_sample(obs)  # the density of the squashed value in (−1, 1): the scale's log-Jacobian is out
    torch.manual_seed(4)
    _, logp_env = m2.actor.head.rsample(m2.actor(obs))
    torch.testing.assert_close(logp, logp_env + math.log(2.0))


class _LocScale(nn.Module):
    def __init__(self, m: SAC) -> None:
        super().__init__()
        self.actor = m.actor

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.actor(obs)
        return mean, log_std.exp()


class _Q(nn.Module):
    def __init__(self, in_dim: int, hidden: list[int]) -> None:
        super().__init__()
        self.net = mlp(in_dim, hidden, 1, "relu")

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, action], -1))


def _copy_ensemble(dst: TensorDict, ens: nn.Module) -> None:
    """Our ensemble's stacked [n, in, out] weights into TorchRL's stacked nn.Linear params [n, out, in]."""
    with torch.no_grad():
        for k, layer in enumerate(ens.layers):  # type: ignore[attr-defined]
            dst["module", "net", str(2 * k), "weight"].data.copy_(layer.weight.transpose(1, 2))
            dst["module", "net", str(2 * k), "bias"].data.copy_(layer.bias[:, 0])


@pytest.mark.filterwarnings("ignore:No target network updater")
@pytest.mark.parametrize("autotune", [True, False])
def test_equals_torchrl_sac_loss(autotune: bool) -> None:
    """TorchRL's SACLoss v2 (no value network, squared error, TD(0), bounds ±1 so both conventions of log π agree):
    the same actor and critics, the same batch and the same noise (both draw a' first, then ã)."""
    torch.manual_seed(0)
    hidden = [32, 32]
    m = SAC(SPEC, hidden=hidden, gamma=0.95, alpha=0.7, autotune_alpha=autotune, target_entropy=-1.5)
    _perturb_targets(m)
    actor = ProbabilisticActor(TensorDictModule(_LocScale(m), ["observation"], ["loc", "scale"]),
                               in_keys=["loc", "scale"], distribution_class=TanhNormal, return_log_prob=True,
                               spec=Bounded(-torch.ones(2), torch.ones(2), (2,)))
    qs = [ValueOperator(_Q(5, hidden), ["observation", "action"]) for _ in range(2)]
    theirs = SACLoss(actor, qs, loss_function="l2", alpha_init=0.7, fixed_alpha=not autotune, target_entropy=-1.5)
    theirs.make_value_estimator(gamma=0.95)
    _copy_ensemble(theirs.qvalue_network_params, m.critic)
    _copy_ensemble(theirs.target_qvalue_network_params, m.critic_target)
    b = _batch(64)
    done = b["terminated"] | b["truncated"]
    td = TensorDict({"observation": b["obs"], "action": b["action"],
                     "next": {"observation": b["next_obs"], "reward": b["reward"][:, None],
                              "terminated": b["terminated"][:, None], "truncated": b["truncated"][:, None],
                              "done": done[:, None]}}, [64])
    torch.manual_seed(123)
    expected = theirs(td)
    torch.manual_seed(123)
    ours = m._compute_loss(b["obs"], b["action"], b["reward"], b["next_obs"], b["terminated"])
    tol = {"rtol": 1e-4, "atol": 1e-5}
    torch.testing.assert_close(2 * ours["loss/critic"], expected["loss_qvalue"], **tol)  # theirs: Σ_i mean, no ½
    torch.testing.assert_close(ours["loss/actor"], expected["loss_actor"], **tol)
    torch.testing.assert_close(ours["stats/entropy"], expected["entropy"], **tol)
    torch.testing.assert_close(ours["stats/alpha"], expected["alpha"])
    if autotune:
        torch.testing.assert_close(ours["loss/alpha"], expected["loss_alpha"], **tol)


def test_optimiser_groups_by_step_size() -> None:
    m = SAC(SPEC, hidden=[8], lr=1e-3)
    m.trainer = SimpleNamespace(precision="32-true")  # type: ignore[assignment]
    opt = m.configure_optimizers()
    trainable = [p for p in m.parameters() if p.requires_grad]  # the target critics are not optimised
    assert len(opt.param_groups) == 1 and len(opt.param_groups[0]["params"]) == len(trainable)
    m = SAC(SPEC, hidden=[8], lr=1e-3, critic_lr=3e-4, alpha_lr=3e-4)
    m.trainer = SimpleNamespace(precision="32-true")  # type: ignore[assignment]
    groups = {g["lr"]: g["params"] for g in m.configure_optimizers().param_groups}
    assert set(groups) == {1e-3, 3e-4}
    assert len(groups[1e-3]) == len(list(m.actor.parameters())) and any(p is m.log_alpha for p in groups[3e-4])
