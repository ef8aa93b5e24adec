"""Reward shaping (lrl/data/shaping.py): the wrapper adds exactly γΦ(s') − Φ(s) (0 after termination, Φ(s') kept on
truncation); potential-based shaping leaves the optimal policy of a small MDP unchanged (solved exactly by value
iteration) while a collectable sub-goal bonus makes a detour optimal; the collector's episode return stays the
env's own and the shaped return is separate; validation refuses what cannot work, in one line."""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from lrl.data.collector import VecEnvCollector
from lrl.data.env import env_fn, make_vec_env, probe_env_spec
from lrl.data.shaping import (
    ENV_REWARD,
    RewardShaping,
    env_reward,
    mountaincar_energy,
    mountaincar_height,
    shaping_term,
)
from lrl.errors import RecipeError
from lrl.recipe import load
from lrl.recipe.schema import EnvConfig


# --- a small deterministic chain MDP ------------------------------------------------------------------------------
class ChainEnv(gym.Env):
    """Positions 0..4, start 2 (or ``options["state"]``), actions 0 = left (stays at 0), 1 = right; −1 per step;
    position 4 is the goal (terminal). Observation: the position as a 1-vector."""

    N, START, GOAL = 5, 2, 4

    def __init__(self, render_mode: str | None = None) -> None:
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(0.0, float(self.N - 1), (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.pos = self.START

    def _obs(self) -> np.ndarray:
        return np.array([self.pos], np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        self.pos = int((options or {}).get("state", self.START))
        return self._obs(), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        self.pos = max(0, self.pos - 1) if int(action) == 0 else self.pos + 1
        return self._obs(), -1.0, self.pos == self.GOAL, False, {}


PHI = np.array([3.0, -2.0, 7.0, 1.0, 5.0])  # an arbitrary potential per position


def chain_potential(obs: np.ndarray) -> np.ndarray:
    return PHI[np.asarray(obs)[..., 0].astype(int)]


def at_left_end(obs: np.ndarray) -> np.ndarray:
    return np.asarray(obs)[..., 0] <= 0


if "LrlTestChain-v0" not in gym.registry:
    gym.register("LrlTestChain-v0", entry_point=f"{__name__}:ChainEnv", max_episode_steps=6)


def test_shaping_term_by_hand() -> None:
    assert shaping_term(2.0, 3.0, 0.9, terminated=False) == pytest.approx(0.9 * 3.0 - 2.0)
    assert shaping_term(2.0, 3.0, 0.9, terminated=True) == pytest.approx(-2.0)  # Φ(terminal) = 0


def test_wrapper_adds_exactly_the_potential_difference_zero_after_termination_kept_on_truncation() -> None:
    gamma, scale = 0.9, 0.5
    env = RewardShaping(gym.make("LrlTestChain-v0"), potential=chain_potential, scale=scale, gamma=gamma)
    obs, _ = env.reset(seed=0)
    # right, right: the goal (terminated) in 2 steps
    phi = scale * PHI[2]
    for action, pos, terminal in ((1, 3, False), (1, 4, True)):
        obs, reward, term, trunc, info = env.step(action)
        assert int(obs[0]) == pos and term == terminal and not trunc
        phi_next = 0.0 if terminal else scale * PHI[pos]
        assert reward == pytest.approx(-1.0 + gamma * phi_next - phi)
        assert info[ENV_REWARD] == -1.0
        phi = phi_next
    # left six times: the time limit (truncated) at position 0, and Φ(s') is kept there
    env.reset(seed=1)
    phi = scale * PHI[2]
    for t in range(6):
        obs, reward, term, trunc, info = env.step(0)
        pos = max(0, 2 - (t + 1))
        assert reward == pytest.approx(-1.0 + gamma * scale * PHI[pos] - phi)
        phi = scale * PHI[pos]
    assert trunc and not term


def test_bonus_is_paid_once_per_episode() -> None:
    env = RewardShaping(gym.make("LrlTestChain-v0"), bonuses=[(at_left_end, 5.0)])
    env.reset(seed=0)
    rewards = [env.step(0)[1] for _ in range(4)]  # 2 → 1 → 0 (bonus) → 0 → 0
    assert rewards == [-1.0, 4.0, -1.0, -1.0]
    env.reset(seed=0)
    assert [env.step(0)[1] for _ in range(2)] == [-1.0, 4.0]  # a new episode pays again


# --- the policy-invariance theorem, exactly -----------------------------------------------------------------------
def _solve(env: RewardShaping, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """Value iteration on the chain seen through the wrapper, states (position, bonus paid); every transition and
    reward is read off the real wrapper. Returns Q[pos, paid, action] and the greedy policy."""
    n, paid_states = ChainEnv.N, (False, True)
    table: dict[tuple[int, bool, int], tuple[int, bool, float, bool]] = {}
    for pos in range(n - 1):  # the goal is terminal
        for paid in paid_states:
            for a in (0, 1):
                env.reset(options={"state": pos})
                env._paid = [paid] * len(env.bonuses)  # the augmented state's bonus flag
                obs, r, term, _, _ = env.step(a)
                now_paid = bool(env._paid[0]) if env.bonuses else False
                table[(pos, paid, a)] = (int(obs[0]), now_paid, float(r), bool(term))
    q = np.zeros((n, 2, 2))
    for _ in range(2000):
        v = q.max(-1)
        new = np.zeros_like(q)
        for (pos, paid, a), (nxt, npaid, r, term) in table.items():
            new[pos, int(paid), a] = r + (0.0 if term else gamma * v[nxt, int(npaid)])
        if np.abs(new - q).max() < 1e-12:
            break
        q = new
    return q, q.argmax(-1)


def test_potential_shaping_keeps_the_optimal_policy_and_a_subgoal_bonus_changes_it() -> None:
    gamma = 0.95
    plain_q, plain = _solve(RewardShaping(ChainEnv()), gamma)
    shaped_q, shaped = _solve(RewardShaping(ChainEnv(), potential=chain_potential, gamma=gamma), gamma)
    bonus_q, bonus = _solve(RewardShaping(ChainEnv(), bonuses=[(at_left_end, 5.0)]), gamma)
    live = slice(0, ChainEnv.N - 1)
    assert (plain[live, 0] == 1).all()  # the plain task: always right
    assert np.array_equal(shaped[live], plain[live])  # Ng, Harada & Russell 1999, Theorem 1
    # and the Q-values moved by exactly −Φ(s) (their Corollary 2)
    np.testing.assert_allclose(shaped_q[live], plain_q[live] - PHI[live, None, None], atol=1e-9)
    # with the bonus still to collect, the detour left (2 steps away from the goal) is optimal from the start
    assert bonus[ChainEnv.START, 0] == 0
    assert bonus_q[ChainEnv.START, 0, 0] > bonus_q[ChainEnv.START, 0, 1]
    assert (bonus[live, 1] == 1).all()  # once paid, the plain policy again


# --- the collector: the env's own return, the shaped one separately -----------------------------------------------
class _Fixed(torch.nn.Module):
    """Always the same action (right on the chain)."""

    def __init__(self, action: int) -> None:
        super().__init__()
        self.action = action

    def forward(self, obs: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {"action": torch.full((obs.shape[0],), self.action, dtype=torch.int64)}


def _shaped_cfg(**shaping: Any) -> EnvConfig:
    return EnvConfig(id="LrlTestChain-v0", num_envs=2, shaping={"gamma": 0.9, **shaping})


def test_collector_counts_the_env_return_and_keeps_the_shaped_return_apart() -> None:
    cfg = _shaped_cfg(potential=f"{__name__}:chain_potential")
    spec = probe_env_spec(cfg)
    c = VecEnvCollector(make_vec_env(cfg, 2), spec, _Fixed(1), steps_per_env=6, env_seeds=[0, 1])
    c.track_extras = True
    td = c.rollout()
    episodes, extras = c.pop_episodes(), c.pop_extras()
    assert episodes == [(-2.0, 2)] * 6  # right, right: the env's own return, 3 episodes per env
    shaped = -2.0 + (0.9 * -0.0 - PHI[3]) + (0.9 * PHI[3] - PHI[2])  # both steps' F, Φ(goal) = 0
    assert [s for s, _ in extras] == pytest.approx([shaped] * 6)
    assert all(math.isnan(ok) for _, ok in extras)  # the chain reports no success
    # the learner sees the shaped reward (before any scaling)
    per_step = td["next", "reward"].squeeze(-1)
    assert per_step[:, :2].sum(-1).tolist() == pytest.approx([shaped, shaped])


def test_unshaped_collector_keeps_nothing_extra_and_reads_no_env_reward() -> None:
    cfg = EnvConfig(id="LrlTestChain-v0", num_envs=2)
    c = VecEnvCollector(make_vec_env(cfg, 2), probe_env_spec(cfg), _Fixed(1), steps_per_env=4, env_seeds=[0, 1])
    c.rollout()
    assert c.pop_episodes() == [(-2.0, 2)] * 4 and c.pop_extras() == []
    assert env_reward({"x": np.zeros(2)}, 2) is None


def test_env_reward_reads_final_info_for_envs_that_ended() -> None:
    info = {ENV_REWARD: np.array([0.0, -1.0]), f"_{ENV_REWARD}": np.array([False, True]),
            "final_info": {ENV_REWARD: np.array([-3.0, 0.0]), f"_{ENV_REWARD}": np.array([True, False])}}
    assert env_reward(info, 2).tolist() == [-3.0, -1.0]  # type: ignore[union-attr]


def test_complete_episode_rollouts_count_the_env_return_too() -> None:
    cfg = _shaped_cfg(bonuses=[{"when": f"{__name__}:at_left_end", "bonus": 5.0}])
    c = VecEnvCollector(make_vec_env(cfg, 2), probe_env_spec(cfg), _Fixed(0), steps_per_env=3, env_seeds=[0, 1],
                        complete_episodes=True)
    c.track_extras = True
    c.rollout()
    assert c.pop_episodes() == [(-6.0, 6)] * 2  # left until the time limit
    assert [s for s, _ in c.pop_extras()] == [-1.0, -1.0]  # −6 + the bonus of 5


def test_evaluation_envs_stay_plain() -> None:
    cfg = _shaped_cfg(potential=f"{__name__}:chain_potential")
    env = env_fn(cfg)()
    env.reset(seed=0)
    _, reward, *_ = env.step(1)
    assert reward == -1.0 and not isinstance(env, RewardShaping)


def test_named_mountaincar_potentials() -> None:
    valley = np.array([[-math.pi / 6, 0.0]])
    flag = np.array([[0.5, 0.0]])
    assert mountaincar_energy(valley)[0] == pytest.approx(-1.0)
    assert mountaincar_energy(flag)[0] == pytest.approx(0.0)
    assert mountaincar_energy(np.array([[-0.5, 0.07]]))[0] == 0.0  # fast enough: capped at 0
    assert mountaincar_height(valley)[0] == pytest.approx(-1.0)
    assert mountaincar_energy(np.array([[-0.3, 0.0], [-0.3, 0.02]])).tolist() == sorted(
        mountaincar_energy(np.array([[-0.3, 0.0], [-0.3, 0.02]])).tolist())  # speed adds energy


# --- validation -----------------------------------------------------------------------------------------------------
def test_gamma_is_resolved_from_the_algorithm() -> None:
    recipe = load("dqn/mountaincar-shaped")
    assert recipe.env is not None and recipe.env.shaping is not None
    assert recipe.env.shaping.gamma == recipe.algo["gamma"] == 0.98
    assert load("dqn/mountaincar-shaped", ["algo.gamma=0.9"]).env.shaping.gamma == 0.9  # type: ignore[union-attr]


@pytest.mark.parametrize(("overrides", "message"), [
    (["env.shaping.gamma=0.5"], "env.shaping.gamma=0.5: must be algo.gamma=0.98"),
    (["env.shaping.potential=nope"], "env.shaping.potential=nope: unknown; named ones: mountaincar_energy"),
    (["env.shaping.potential=no_such_module:f"], "env.shaping.potential=no_such_module:f: cannot be imported"),
    (["env.shaping.potential=null"], "env.shaping: set potential"),
    (["env.shaping.bonuses=[{when: nope, bonus: 1}]"], "env.shaping.bonuses[0].when=nope: unknown"),
    (["env.shaping.scale=.nan"], "env.shaping.scale"),
])
def test_bad_shaping_is_one_line(overrides: list[str], message: str) -> None:
    with pytest.raises(RecipeError) as err:
        load("dqn/mountaincar-shaped", overrides)
    assert message in err.value.message and "\n" not in err.value.message


def test_potential_needs_a_discount() -> None:
    from lrl.recipe.load import _check_env_sections

    env = EnvConfig(id="MountainCar-v0", shaping={"potential": "mountaincar_energy"})
    with pytest.raises(RecipeError, match="has no discount"):
        _check_env_sections(env, {"name": "my:Algo"}, {"name": "replay"})
    bonuses_only = EnvConfig(id="MountainCar-v0", shaping={"bonuses": [{"when": "mountaincar_left_hill", "bonus": 1}]})
    assert _check_env_sections(bonuses_only, {"name": "my:Algo"}, {"name": "replay"}).shaping.gamma is None  # type: ignore[union-attr]


def test_torchrl_collector_is_refused_with_shaping() -> None:
    with pytest.raises(RecipeError, match=r"needs data\.collector=lean"):
        load("ppo/cartpole", ["env.shaping.bonuses=[{when: mountaincar_left_hill, bonus: 1}]",
                              "data.collector=torchrl"])


def test_reward_scaling_sees_the_shaped_reward() -> None:
    """env.normalize_reward scales what the learner sees: shaping comes first, inside the env."""
    from lrl.data.normalize import RewardScaler

    cfg = _shaped_cfg(potential=f"{__name__}:chain_potential")
    spec = probe_env_spec(cfg)
    plain = VecEnvCollector(make_vec_env(cfg, 2), spec, _Fixed(1), steps_per_env=6, env_seeds=[0, 1]).rollout()
    scaled = VecEnvCollector(make_vec_env(cfg, 2), spec, _Fixed(1), steps_per_env=6, env_seeds=[0, 1],
                             reward_scaler=RewardScaler(2, 0.9, 10.0)).rollout()
    expected, scaler = [], RewardScaler(2, 0.9, 10.0)
    for t in range(6):
        shaped = plain["next", "reward"][:, t, 0].double().numpy()
        expected.append(scaler(shaped, plain["next", "done"][:, t, 0].numpy()))
    np.testing.assert_allclose(scaled["next", "reward"][..., 0].numpy(), np.stack(expected, 1), rtol=1e-6)
