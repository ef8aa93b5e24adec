"""Success rate in evaluation: each episode's success flag is read from the info of its last step (gymnasium 1.x vector
envs with SAME_STEP autoreset report it in ``final_info``), only the first episode of each evaluation env counts, and
envs that report no success give no success rate."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from lrl.evaluate import evaluate, final_success, info_success
from lrl.recipe.schema import EnvConfig

TOY = "LrlSuccessToy-v0"


class SuccessToy(gym.Env):
    """Episode of seed s: succeeds iff s % 3 == 0; successes last 5 steps, failures 1, so counting any episode after
    an env's first (its auto-reset successors) would change the rate. The flag is ``is_success`` (Fetch's name),
    False on every step but a successful episode's last."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self, render_mode: str | None = None) -> None:
        self.render_mode = render_mode

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        super().reset(seed=seed)
        self.win = seed is not None and seed % 3 == 0
        self.left = 5 if self.win else 1
        return np.zeros(1, np.float32), {"is_success": False}

    def step(self, action: Any) -> Any:
        self.left -= 1
        end = self.left == 0
        return np.zeros(1, np.float32), 0.0, end, False, {"is_success": bool(end and self.win)}


@pytest.fixture(scope="module", autouse=True)
def _toy() -> Any:
    gym.register(TOY, entry_point=SuccessToy)
    yield
    gym.registry.pop(TOY, None)


def _zero(obs: np.ndarray) -> np.ndarray:
    return np.zeros((len(obs), 1), np.float32)


def test_final_success_reads_the_ending_step_info_with_its_masks() -> None:
    info = {"success": np.array([False, False, False]), "_success": np.array([True, True, True]),  # the reset's
            "final_info": {"success": np.array([True, False, False]), "_success": np.array([True, True, False])},
            "_final_info": np.array([True, True, False])}
    success, reported = final_success(info, 3)
    assert success.tolist() == [True, False, False] and reported.tolist() == [True, True, False]
    assert [v.tolist() for v in final_success({"success": np.array([True])}, 1)] == [[False], [False]]  # no end
    fetch = {"final_info": {"is_success": np.array([0.0, 1.0])}, "_final_info": np.array([True, True])}
    assert final_success(fetch, 2)[0].tolist() == [False, True]
    assert info_success({"success": True}) is True and info_success({"is_success": 0.0}) is False
    assert info_success({"other": 1}) is None


@pytest.mark.parametrize("wave", [16, 4])
def test_evaluate_reports_the_first_episode_of_each_env(wave: int) -> None:
    result = evaluate(_zero, EnvConfig(id=TOY), episodes=10, seed=0, wave=wave)
    assert result["success_rate"] == pytest.approx(0.4)  # seeds 0, 3, 6, 9 of 0-9
    assert result["length_mean"] == pytest.approx((4 * 5 + 6 * 1) / 10)


def test_no_success_rate_where_the_env_reports_none() -> None:
    assert "success_rate" not in evaluate(lambda obs: np.zeros(len(obs), np.int64), EnvConfig(id="CartPole-v1"),
                                          episodes=2, seed=0)


def test_pointmaze_reports_success() -> None:
    """gymnasium-robotics' PointMaze by its bare id (lrl imports gymnasium-robotics for it) and by
    ``module:EnvId``; a policy that stays put does not reach the goal (start and goal are in different cells)."""
    pytest.importorskip("gymnasium_robotics")
    for env_id in ("PointMaze_UMaze-v3", "gymnasium_robotics:PointMaze_UMaze-v3"):
        cfg = EnvConfig(id=env_id, max_episode_steps=5, kwargs={"continuing_task": False})
        result = evaluate(lambda obs: np.zeros((len(obs["observation"]), 2), np.float32), cfg, episodes=3, seed=0)
        assert result["success_rate"] == 0.0 and result["length_mean"] == 5
