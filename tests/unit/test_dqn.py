"""DQN maths: targets (terminated vs truncated, Double DQN, the seed's Double Q-learning) against hand
computations and TorchRL's DQNLoss, target-network updates, the ε schedule."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from torch import nn
from torchrl.modules import QValueActor
from torchrl.objectives import DQNLoss

from lrl.algos.dqn.loss import q_target
from lrl.algos.dqn.module import DQN
from lrl.estimators.losses import td_loss
from lrl.networks.q import epsilon
from lrl.networks.target import hard_update_, make_target, polyak_update_
from lrl.spec import EnvSpec
from tests.unit.test_wiring import DISCRETE, attach, params_of, perturb_, step, transitions

SPEC = EnvSpec("Toy-v0", (3,), "discrete", 2)


def test_q_target_by_hand_terminated_and_truncated() -> None:
    reward = torch.tensor([1.0, 2.0, 3.0])
    next_q = torch.tensor([[0.5, 4.0], [7.0, -1.0], [2.0, 3.0]])
    terminated = torch.tensor([False, True, False])  # the third step is a truncation: it still bootstraps
    y = q_target(reward, terminated, next_q, next_q, gamma=0.9)
    torch.testing.assert_close(y, torch.tensor([1.0 + 0.9 * 4.0, 2.0, 3.0 + 0.9 * 3.0]))


def test_double_dqn_target_evaluates_the_online_argmax_with_the_target_net() -> None:
    reward, terminated = torch.tensor([0.0, 1.0]), torch.tensor([False, False])
    online = torch.tensor([[1.0, 2.0], [5.0, 0.0]])  # argmax: 1, 0
    target = torch.tensor([[10.0, 3.0], [4.0, 8.0]])
    y = q_target(reward, terminated, online, target, gamma=0.5)
    torch.testing.assert_close(y, torch.tensor([0.5 * 3.0, 1.0 + 0.5 * 4.0]))
    plain = q_target(reward, terminated, target, target, gamma=0.5)  # max over the target: 10 and 8
    torch.testing.assert_close(plain, torch.tensor([5.0, 5.0]))


def test_seed_double_q_learning_networks_swap_roles() -> None:
    """Alg. 2.6: updating ψ1 selects with ψ1' and evaluates with ψ2'; updating ψ2 the other way round."""
    m = DQN(SPEC, target="double_q", hidden=[8])
    assert m.q2 is not None and m.q_target is not None and m.q2_target is not None
    online, select, evaluate = m._networks(0)
    assert (online, select, evaluate) == (m.q, m.q_target, m.q2_target)
    online, select, evaluate = m._networks(1)
    assert (online, select, evaluate) == (m.q2, m.q2_target, m.q_target)
    obs = torch.randn(16, 3)
    out = m._compute_loss(obs, torch.randint(2, (16,)), torch.randn(16), torch.randn(16, 3),
                          torch.zeros(16, dtype=torch.bool), 0)
    out["loss"].backward()
    assert all(p.grad is not None for p in m.q.parameters())
    assert all(p.grad is None for p in m.q2.parameters())  # only the selected network learns


def test_targets_carry_no_gradient_and_loss_kinds() -> None:
    m = DQN(SPEC, hidden=[8], loss="mse")
    obs, nxt = torch.randn(5, 3), torch.randn(5, 3)
    action, reward, term = torch.randint(2, (5,)), torch.randn(5), torch.zeros(5, dtype=torch.bool)
    out = m._compute_loss(obs, action, reward, nxt, term, 0)
    assert not out["y"].requires_grad
    q_taken = m.q(obs).gather(-1, action[:, None]).squeeze(-1)
    y = q_target(reward, term, m.q_target(nxt), m.q_target(nxt), 0.99).detach()  # type: ignore[misc]
    torch.testing.assert_close(out["loss"], ((q_taken - y) ** 2).mean())
    d = torch.tensor([0.5, 3.0])
    assert td_loss(d, torch.zeros(2), "huber").item() == pytest.approx((0.5 * 0.25 + (3.0 - 0.5)) / 2)


@pytest.mark.parametrize("double", [False, True])
def test_equals_torchrl_dqn_loss(double: bool) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 2))
    actor = QValueActor(net, in_keys=["observation"], action_space="categorical")
    theirs = DQNLoss(actor, loss_function="smooth_l1", delay_value=True, double_dqn=double,
                     action_space="categorical")
    theirs.make_value_estimator(gamma=0.9)
    with torch.no_grad():  # a target network that differs from the online one
        for p in theirs.target_value_network_params.values(True, True):
            p.add_(0.3 * torch.randn_like(p))
    target_net = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 2))
    params = list(theirs.target_value_network_params.values(True, True))
    with torch.no_grad():
        for mine, ref in zip(target_net.parameters(), params, strict=True):
            mine.copy_(ref.reshape(mine.shape))
    n = 32
    obs, nxt = torch.randn(n, 3), torch.randn(n, 3)
    action, reward = torch.randint(2, (n,)), torch.randn(n)
    terminated = torch.rand(n) < 0.3
    truncated = (torch.rand(n) < 0.3) & ~terminated
    td = TensorDict({"observation": obs, "action": action,
                     "next": {"observation": nxt, "reward": reward[:, None], "terminated": terminated[:, None],
                              "truncated": truncated[:, None], "done": (terminated | truncated)[:, None]}}, [n])
    expected = theirs(td)["loss"]
    with torch.no_grad():
        select = net(nxt) if double else target_net(nxt)
        y = q_target(reward, terminated, select, target_net(nxt), 0.9)
    ours = td_loss(net(obs).gather(-1, action[:, None]).squeeze(-1), y, "huber")
    torch.testing.assert_close(ours, expected)


def test_polyak_and_hard_updates_are_exact() -> None:
    online = nn.Linear(4, 3)
    target = make_target(online)
    assert not any(p.requires_grad for p in target.parameters())
    with torch.no_grad():
        for p in online.parameters():
            p.add_(1.0)
    before = [p.clone() for p in target.parameters()]
    polyak_update_(target, online, tau=0.01)  # the seed's ς = 0.99: 1 % of the way to the online network
    for t, b, o in zip(target.parameters(), before, online.parameters(), strict=True):
        torch.testing.assert_close(t, 0.99 * b + 0.01 * o)
    polyak_update_(target, online, tau=0.0)
    polyak_update_(target, online, tau=1.0)
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        assert torch.equal(t, o)
    with torch.no_grad():
        online.weight.mul_(2)
    hard_update_(target, online)
    assert torch.equal(target.weight, online.weight)


@pytest.mark.parametrize("every", [1, 2, 3])
def test_hard_target_copy_counts_optimiser_steps(every: int) -> None:
    """Alg. 2.2's hard copy Q' ← Q after every ``target_update_every``-th update, counted over the run's optimiser
    steps (the trainer's ``global_step``, restored on resume), through ``training_step``, which takes all of a
    collection step's updates (here one per call)."""
    torch.manual_seed(0)
    m = DQN(DISCRETE, hidden=[8], target_update="hard", target_update_every=every, max_grad_norm=None)
    assert m.q_target is not None
    perturb_(m.q_target, 0.5, seed=1)
    attach(m)
    td = transitions(DISCRETE)
    copied = []
    for _ in range(6):
        before = params_of(m.q_target)
        step(m, td)
        same = all(torch.equal(a, b) for a, b in zip(m.q_target.parameters(), m.q.parameters(), strict=True))
        moved = any(not torch.equal(v, before[k]) for k, v in m.q_target.named_parameters())
        assert same == moved, "the target either became a copy of Q or stayed as it was"
        copied.append(same)
    assert m.trainer.global_step == 6
    assert copied == [(n + 1) % every == 0 for n in range(6)]


def test_epsilon_schedules() -> None:
    assert epsilon(0, 1.0, 0.04, 8000) == 1.0
    assert epsilon(4000, 1.0, 0.04, 8000) == pytest.approx(0.52)
    assert epsilon(8000, 1.0, 0.04, 8000) == epsilon(10**6, 1.0, 0.04, 8000) == 0.04
    assert epsilon(4000, 1.0, 0.01, 8000, "exponential") == pytest.approx(0.1)


def test_epsilon_greedy_collection_policy_explores_at_rate_epsilon() -> None:
    m = DQN(SPEC, hidden=[8], eps_start=0.3, eps_end=0.3)
    policy = m.collection_policy()
    obs = torch.randn(1, 3).expand(20000, 3)
    greedy = m.act(obs[:1]).item()
    actions = policy(obs, torch.Generator().manual_seed(0))["action"]
    other = (actions != greedy).float().mean().item()  # ε/2 of the random actions pick the other action
    assert other == pytest.approx(0.15, abs=0.01)
    explored = m.act(obs, deterministic=False)  # actions, as evaluation and load_policy need them
    assert explored.shape == (20000,) and ((explored != greedy).float().mean().item() == pytest.approx(0.15, abs=0.01))
