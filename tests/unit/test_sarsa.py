"""SARSA / Expected SARSA maths (Rossi §2.10, eq. 2.9-2.12): targets against hand
computations (terminated vs truncated), Expected SARSA with a greedy π is the Q-learning target, sampled SARSA
targets average to the Expected-SARSA target, a' at rollout cuts comes from the current ε-greedy π at the true
next observation, policy evaluation reaches Q^π of a linear solve, and on CliffWalking the on-policy fixed point
keeps away from the cliff while Q-learning's walks along it (Sutton & Barto Example 6.6)."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch
from tensordict import TensorDict

from lrl.algos.dqn.loss import q_target
from lrl.algos.sarsa.loss import (
    epsilon_greedy_probs,
    expected_sarsa_target,
    next_actions,
    rollout_cuts,
    sarsa_target,
)
from lrl.algos.sarsa.module import SARSA
from lrl.errors import RecipeError
from lrl.estimators.losses import td_loss
from lrl.networks.q import EpsilonGreedy
from lrl.recipe import load
from lrl.spec import EnvSpec

SPEC = EnvSpec("Toy-v0", (3,), "discrete", 3)


# --- targets ----------------------------------------------------------------------------------------------------
def test_sarsa_target_by_hand_terminated_and_truncated() -> None:
    reward = torch.tensor([1.0, 2.0, 3.0])
    next_q = torch.tensor([[0.5, 4.0, 1.0], [7.0, -1.0, 0.0], [2.0, 3.0, -5.0]])
    next_action = torch.tensor([0, 1, 2])  # not the argmax: SARSA bootstraps with the action taken
    terminated = torch.tensor([False, True, False])  # the third step is a truncation: it still bootstraps
    y = sarsa_target(reward, terminated, next_q, next_action, gamma=0.9)
    torch.testing.assert_close(y, torch.tensor([1.0 + 0.9 * 0.5, 2.0, 3.0 + 0.9 * -5.0]))
    assert y.dtype == torch.float32


def test_expected_sarsa_target_by_hand_terminated_and_truncated() -> None:
    reward = torch.tensor([1.0, 2.0, 3.0])
    next_q = torch.tensor([[0.5, 4.0, 1.0], [7.0, -1.0, 0.0], [2.0, 3.0, -5.0]])
    probs = torch.tensor([[0.2, 0.5, 0.3], [1.0, 0.0, 0.0], [0.1, 0.1, 0.8]])
    terminated = torch.tensor([False, True, False])
    y = expected_sarsa_target(reward, terminated, next_q, probs, gamma=0.9)
    v0 = 0.2 * 0.5 + 0.5 * 4.0 + 0.3 * 1.0
    v2 = 0.1 * 2.0 + 0.1 * 3.0 + 0.8 * -5.0
    torch.testing.assert_close(y, torch.tensor([1.0 + 0.9 * v0, 2.0, 3.0 + 0.9 * v2]))


def test_epsilon_greedy_probs_by_hand() -> None:
    q = torch.tensor([[1.0, 3.0, 2.0], [5.0, 5.0, 0.0]])  # second row: a tie goes to the first action (argmax)
    p = epsilon_greedy_probs(q, 0.3)
    torch.testing.assert_close(p, torch.tensor([[0.1, 0.8, 0.1], [0.8, 0.1, 0.1]]))
    torch.testing.assert_close(p.sum(-1), torch.ones(2))


def test_expected_sarsa_with_greedy_policy_is_the_q_learning_target() -> None:
    """§2.10: with a greedy target policy Expected SARSA coincides with Q-learning (and DQN's target)."""
    torch.manual_seed(0)
    reward, next_q = torch.randn(64), torch.randn(64, 4)
    terminated = torch.rand(64) < 0.3
    greedy = epsilon_greedy_probs(next_q, 0.0)
    assert set(greedy.unique().tolist()) == {0.0, 1.0}
    y = expected_sarsa_target(reward, terminated, next_q, greedy, gamma=0.97)
    assert torch.equal(y, q_target(reward, terminated, next_q, next_q, gamma=0.97))
    # so is SARSA whose a' is the greedy action
    assert torch.equal(sarsa_target(reward, terminated, next_q, next_q.argmax(-1), 0.97), y)


def test_mean_of_sampled_sarsa_targets_is_the_expected_sarsa_target() -> None:
    """a' drawn by the collection policy (ε-greedy, the generator's draws), averaged over many draws."""
    torch.manual_seed(0)
    eps, n = 0.4, 200_000
    reward, next_q = torch.randn(5), torch.randn(5, 3)
    terminated = torch.tensor([False, False, True, False, False])
    policy = EpsilonGreedy(lambda obs: next_q[obs[:, 0].long()], lambda: eps, 3)
    obs = torch.arange(5).repeat(n).unsqueeze(-1).float()  # state i = next_q[i]
    a = policy(obs, torch.Generator().manual_seed(1))["action"].view(n, 5)
    samples = sarsa_target(reward.repeat(n, 1), terminated.repeat(n, 1), next_q.expand(n, 5, 3), a, gamma=0.9)
    expected = expected_sarsa_target(reward, terminated, next_q, epsilon_greedy_probs(next_q, eps), gamma=0.9)
    sd = (samples.std(0) / n**0.5).max().item()  # standard error of the mean, ~3e-3 here
    torch.testing.assert_close(samples.mean(0), expected, atol=5 * sd, rtol=0)
    assert torch.equal(samples[:, 2], reward[2].expand(n))  # terminated: y = r whatever a'


def test_targets_carry_no_gradient_and_use_the_target_network() -> None:
    m = SARSA(SPEC, hidden=[8], loss="mse", gamma=0.9)
    assert m.q_target is not None
    with torch.no_grad():  # a target network that differs from the online one
        for p in m.q_target.parameters():
            p.add_(0.5)
    obs, nxt = torch.randn(6, 3), torch.randn(6, 3)
    action, next_action = torch.randint(3, (6,)), torch.randint(3, (6,))
    reward, term = torch.randn(6), torch.tensor([False, True, False, False, True, False])
    out = m._compute_loss(obs, action, reward, nxt, term, next_action)
    assert not out["y"].requires_grad
    y = reward + 0.9 * (~term).float() * m.q_target(nxt).gather(-1, next_action[:, None]).squeeze(-1)
    q_taken = m.q(obs).gather(-1, action[:, None]).squeeze(-1)
    torch.testing.assert_close(out["loss"], ((q_taken - y.detach()) ** 2).mean())
    out["loss"].backward()
    assert all(p.grad is not None for p in m.q.parameters())
    assert all(p.grad is None for p in m.q_target.parameters())
    # without a target network the online net (detached) evaluates Q(s', ·): the seed's simple version
    plain = SARSA(SPEC, hidden=[8], loss="huber", target_update="none", expected=True)
    probs = torch.softmax(torch.randn(6, 3), -1)
    out = plain._compute_loss(obs, action, reward, nxt, term, probs)
    y = expected_sarsa_target(reward, term, plain.q(nxt), probs, 0.99).detach()
    torch.testing.assert_close(out["loss"], td_loss(plain.q(obs).gather(-1, action[:, None]).squeeze(-1), y))


# --- the next action a' in a rollout ----------------------------------------------------------------------------
def test_next_actions_by_hand() -> None:
    action = torch.tensor([[0, 1, 2, 0], [2, 2, 1, 0]])
    done = torch.tensor([[False, True, False, False], [False, False, False, False]])
    cut = rollout_cuts(done)
    assert cut.tolist() == [[False, True, False, True], [False, False, False, True]]
    a2 = next_actions(action, cut, torch.tensor([7, 8, 9]))  # row-major order of the cuts
    assert a2.tolist() == [[1, 7, 0, 8], [2, 1, 0, 9]]
    assert action.tolist() == [[0, 1, 2, 0], [2, 2, 1, 0]]  # unchanged


def _toy_rollout() -> TensorDict:
    """N = 2 envs x T = 4 steps over one-hot states 0..2. Env 0 is truncated at t = 1 (final state 2, reset to
    state 0), env 1 terminates at t = 1 (final state 0, reset to state 1). The stored actions are chosen so that
    the stored next action, the greedy action at the reset state and the greedy action at the true final state
    all differ wherever a test tells them apart."""
    eye = torch.eye(3)
    obs = torch.stack([eye[[0, 1, 0, 1]], eye[[1, 2, 1, 0]]])
    nxt = torch.stack([eye[[1, 2, 1, 0]], eye[[2, 0, 0, 2]]])
    terminated = torch.tensor([[False, False, False, False], [False, True, False, False]])
    truncated = torch.tensor([[False, True, False, False], [False, False, False, False]])
    return TensorDict({
        "observation": obs, "action": torch.tensor([[1, 1, 0, 1], [0, 0, 0, 0]]),
        "next": {"observation": nxt, "reward": torch.ones(2, 4, 1), "terminated": terminated.unsqueeze(-1),
                 "truncated": truncated.unsqueeze(-1), "done": (terminated | truncated).unsqueeze(-1)},
    }, batch_size=[2, 4])


def _module_with_q_table(**kw: object) -> SARSA:
    """Q(s, ·) = column s of a table for one-hot s: greedy actions 2, 0, 1 in states 0, 1, 2."""
    m = SARSA(SPEC, hidden=[], **kw)  # type: ignore[arg-type]
    with torch.no_grad():
        m.q[0].weight.copy_(torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]))
        m.q[0].bias.zero_()
    return m


def test_next_action_is_the_action_taken_inside_episodes_and_pi_at_the_true_next_observation_at_cuts() -> None:
    m = _module_with_q_table(eps_start=0.0, eps_end=0.0)  # π greedy: a' at a cut is deterministic
    td = m.annotate(_toy_rollout(), torch.Generator().manual_seed(0))
    a2 = td["next_action"]
    # env 0: t=0, 2 inside the episode -> stored actions 1, 1 (greedy there would be 0);
    #        t=1 truncated -> π at the final state 2 = 1 (stored next action 0; greedy at the reset state 0 = 2);
    #        t=3 rollout end -> π at next state 0 = 2 (not a wrap-around to the stored action 1)
    assert a2[0].tolist() == [1, 1, 1, 2]
    # env 1: t=1 terminated -> π at the final state 0 = 2 (the target does not use it); t=3 -> π at state 2 = 1
    assert a2[1].tolist() == [0, 2, 0, 1]
    y = sarsa_target(td["next", "reward"].squeeze(-1), td["next", "terminated"].squeeze(-1),
                     m.q_values(td["next", "observation"]), a2, gamma=0.5)
    assert y[0, 1] == 1.0 + 0.5 * 1.0  # truncated: bootstraps from Q(final state 2, a' = 1) = 1
    assert y[1, 1] == 1.0  # terminated: no bootstrap


def test_next_action_at_cuts_is_drawn_like_the_collector_would() -> None:
    """With ε = 1 the cut actions are uniform draws from the collector's generator: the same draws the
    collection policy makes at the true next observations, in row-major order."""
    m = _module_with_q_table(eps_start=1.0, eps_end=1.0)
    td = m.annotate(_toy_rollout(), torch.Generator().manual_seed(3))
    cut = rollout_cuts(td["next", "done"].squeeze(-1))
    ref = m.collection_policy()(td["next", "observation"][cut], torch.Generator().manual_seed(3))["action"]
    assert torch.equal(td["next_action"][cut], ref)
    assert torch.equal(td["next_action"][~cut], torch.roll(td["action"], -1, 1)[~cut])


def test_expected_sarsa_annotates_the_epsilon_greedy_probabilities_at_the_true_next_observation() -> None:
    m = _module_with_q_table(eps_start=0.3, eps_end=0.3, expected=True)
    td = m.annotate(_toy_rollout(), torch.Generator())
    greedy_next = torch.tensor([[0, 1, 0, 2], [1, 2, 2, 1]])  # greedy at the next observations
    want = 0.1 + 0.7 * torch.nn.functional.one_hot(greedy_next, 3).float()
    torch.testing.assert_close(td["next_probs"], want)
    assert "next_action" not in td


def test_epsilon_follows_the_frames_at_the_start_of_the_rollout() -> None:
    m = _module_with_q_table(eps_start=1.0, eps_end=0.0, eps_decay_frames=100, expected=True)
    m.set_clock(25)  # the on-policy DataModule sets this before collecting
    td = m.annotate(_toy_rollout(), torch.Generator())
    assert m.epsilon() == pytest.approx(0.75)
    torch.testing.assert_close(td["next_probs"].max(), torch.tensor(0.75 / 3 + 0.25))


def test_refuses_a_replay_buffer() -> None:
    """SARSA declares it learns from on-policy rollouts only: a replay source is refused at validate time."""
    assert SARSA.consumes.sources == ("onpolicy",)
    with pytest.raises(RecipeError, match="learns from onpolicy data"):
        load("sarsa/cartpole", ["data.name=replay"])


# --- what SARSA learns ------------------------------------------------------------------------------------------
def _tabular(env_id: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(P [S, A, S'], expected reward R [S, A], terminal-state mask [S']) of a gymnasium toy-text env."""
    env = gym.make(env_id).unwrapped
    n_s, n_a = env.observation_space.n, env.action_space.n  # type: ignore[attr-defined]
    p, r = torch.zeros(n_s, n_a, n_s, dtype=torch.float64), torch.zeros(n_s, n_a, dtype=torch.float64)
    terminal = torch.zeros(n_s, dtype=torch.bool)
    for s in range(n_s):
        for a in range(n_a):
            for prob, s2, rew, term in env.P[s][a]:  # type: ignore[attr-defined]
                p[s, a, s2] += prob
                r[s, a] += prob * rew
                terminal[s2] |= bool(term)
    return p, r, terminal


def _sweep(q: torch.Tensor, p: torch.Tensor, r: torch.Tensor, terminal: torch.Tensor, gamma: float,
           probs: torch.Tensor | None) -> torch.Tensor:
    """One synchronous sweep of the expected update Q(s, a) ← E_s'[y] with the module's target functions,
    every (s, a, s') as one row of a batch; ``probs`` None = Q-learning's max."""
    n_s, n_a = q.shape
    s2 = torch.arange(n_s).repeat(n_s * n_a)
    zero = torch.zeros(n_s * n_a * n_s, dtype=torch.float64)
    term = terminal[s2]
    if probs is None:
        y = q_target(zero, term, q[s2], q[s2], gamma)
    else:
        y = expected_sarsa_target(zero, term, q[s2], probs[s2], gamma)
    return r + (p.reshape(-1) * y.double()).view(n_s, n_a, n_s).sum(-1)


def test_expected_sarsa_evaluation_converges_to_q_pi_of_the_linear_solve() -> None:
    """Policy evaluation (the seed's 'Q-value estimation only'): the fixed point is Q^π = R + γ P Π Q^π."""
    p, r, terminal = _tabular("FrozenLake-v1")  # slippery: stochastic transitions
    gamma = 0.9
    pi = torch.softmax(torch.randn(16, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64), -1)
    q = torch.zeros(16, 4, dtype=torch.float64)
    for _ in range(300):
        q = _sweep(q, p, r, terminal, gamma, pi)
    pi_live = pi * (~terminal).double().unsqueeze(-1)  # no bootstrap from terminal states
    m = (gamma * p.reshape(64, 16).unsqueeze(-1) * pi_live.unsqueeze(0)).reshape(64, 64)
    q_pi = torch.linalg.solve(torch.eye(64, dtype=torch.float64) - m, r.reshape(-1)).view(16, 4)
    torch.testing.assert_close(q, q_pi, atol=1e-6, rtol=0)  # targets are float32


def _greedy_path(q: torch.Tensor, p: torch.Tensor, start: int, goal: int) -> list[int]:
    path = [start]
    while path[-1] != goal and len(path) < 60:
        path.append(int(p[path[-1], int(q[path[-1]].argmax())].argmax()))
    return path


def test_cliff_walking_sarsa_learns_the_safe_path_q_learning_the_edge() -> None:
    """Q-learning learns Q* and its greedy path runs along the cliff edge (13 steps); on-policy (Expected)
    SARSA with ε = 0.1 learns Q of the ε-greedy policy, which sometimes steps at random, and its greedy path keeps
    a row between itself and the cliff (15 steps). Fixed points of the tabular updates, iterated to convergence."""
    p, r, terminal = _tabular("CliffWalking-v1")  # 4 x 12 grid; start 36, goal 47, cliff 37..46 (reward −100)
    q_star = torch.zeros(48, 4, dtype=torch.float64)
    q_sarsa = torch.zeros(48, 4, dtype=torch.float64)
    for _ in range(100):  # both converge within ~75 sweeps
        q_star = _sweep(q_star, p, r, terminal, 1.0, None)
        q_sarsa = _sweep(q_sarsa, p, r, terminal, 1.0, epsilon_greedy_probs(q_sarsa, 0.1).double())
    edge, safe = _greedy_path(q_star, p, 36, 47), _greedy_path(q_sarsa, p, 36, 47)
    assert edge == [36, 24, *range(25, 36), 47]  # row 2, right next to the cliff
    assert safe == [36, 24, 12, *range(13, 24), 35, 47]  # row 1: one row further away
    # the ε-greedy policy's value at the start is worse than Q*'s optimum, which assumes no exploration
    assert q_sarsa[36].max() < q_star[36].max() == -13
