"""Curricula (lrl/data/curriculum.py): the advance rule (only when the window of the current stage is full and its
metric reaches the threshold, one stage at a time, the window emptied after an advance), stages applied at each
sub-env's next reset (attributes, or a rebuilt env for make kwargs), every rank's episodes in one decision, the
stage in checkpoints, and validation in one line."""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from lrl.data.collector import VecEnvCollector
from lrl.data.curriculum import Curriculum, EpisodeExtras, StagedEnv, stage_factory
from lrl.data.env import _make_one, make_vec_env, probe_env_spec
from lrl.errors import LrlError, RecipeError
from lrl.recipe import load
from lrl.recipe.schema import EnvConfig


# --- the advance rule ---------------------------------------------------------------------------------------------
def test_advances_only_when_the_window_is_full_and_its_mean_reaches_the_threshold() -> None:
    c = Curriculum(3, "mean_return", window=3, threshold=-100.0)
    c.observe([-50.0, -60.0], [])
    assert not c.check(10) and c.stage == 0  # 2 of 3 episodes: not yet, however good
    c.observe([-200.0], [])
    assert not c.check(20) and c.stage == 0  # full, mean −103.3 < −100
    c.observe([-50.0], [])  # the window slides: −60, −200, −50 → −103.3
    assert not c.check(30)
    c.observe([-90.0], [])  # −200, −50, −90 → −113.3
    c.observe([-10.0, -10.0], [])  # −90, −10, −10 → −36.7
    assert c.check(40) and c.stage == 1 and c.advanced_at == [40]
    assert len(c.values) == 0 and math.isnan(c.value())  # the window starts afresh on the new stage


def test_never_skips_a_stage_and_stays_on_the_last() -> None:
    c = Curriculum(3, "mean_return", window=2, threshold=0.0)
    c.observe([5.0] * 10, [])  # enough good episodes for several stages at once
    assert c.check(1) and c.stage == 1
    assert not c.check(2) and c.stage == 1  # the window was emptied: stage 1 has to earn its own
    c.observe([5.0, 5.0], [])
    assert c.check(3) and c.stage == 2
    c.observe([5.0, 5.0], [])
    assert not c.check(4) and c.stage == 2  # the last stage is the target task


def test_success_rate_reads_successes_and_needs_them() -> None:
    c = Curriculum(2, "success_rate", window=4, threshold=0.75)
    c.observe([-1.0] * 4, [1.0, 1.0, 0.0, 1.0])
    assert c.check(0) and c.stage == 1
    with pytest.raises(LrlError, match="reports neither"):
        Curriculum(2, "success_rate", window=4, threshold=0.5).observe([-1.0], [math.nan])


# --- stages applied at reset --------------------------------------------------------------------------------------
def _staged(stages: list[dict[str, Any]], env_id: str = "MountainCar-v0") -> StagedEnv:
    return StagedEnv(stage_factory(_make_one, env_id), None, {}, stages)


def test_attrs_change_at_the_next_reset_only_and_unnamed_ones_go_back_to_the_env_default() -> None:
    env = _staged([{"attrs": {"force": 0.003}}, {"attrs": {"gravity": 0.002}}, {}])
    env.reset(seed=0)
    assert env.unwrapped.force == 0.003 and env.unwrapped.gravity == 0.0025
    env.step(2)
    env.set_stage(1)
    env.step(2)
    assert env.unwrapped.force == 0.003 and env.stage == 1 - 1  # not inside an episode
    env.reset()
    assert (env.unwrapped.force, env.unwrapped.gravity, env.stage) == (0.001, 0.002, 1)
    env.set_stage(2)
    env.reset()
    assert (env.unwrapped.force, env.unwrapped.gravity) == (0.001, 0.0025)  # the target task: the env's own
    with pytest.raises(ValueError, match="out of range"):
        env.set_stage(3)


def test_kwargs_rebuild_the_env_at_the_next_reset_seeded_from_the_old_one() -> None:
    def run() -> tuple[list[np.ndarray], StagedEnv, gym.Env]:
        env = _staged([{"kwargs": {"max_episode_steps": 3}}, {"kwargs": {"goal_velocity": 0.01}}])
        first = env.env
        obs = [env.reset(seed=7)[0]]
        for _ in range(3):
            o, _, _, trunc, _ = env.step(0)
            obs.append(o)
        assert trunc  # stage 0: a 3-step limit
        env.set_stage(1)
        obs.append(env.reset()[0])
        return obs, env, first

    a, env, first = run()
    assert env.env is not first and env.unwrapped.goal_velocity == 0.01
    for _ in range(3):
        assert not env.step(0)[3]  # the env's own 200-step limit again
    b, _, _ = run()
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)  # the rebuilt env's start state is reproducible


def _cfg(**curriculum: Any) -> EnvConfig:
    return EnvConfig(id="MountainCar-v0", num_envs=2, curriculum={
        "stages": [{"kwargs": {"max_episode_steps": 3}}, {"attrs": {"force": 0.002}}], "threshold": -100.0,
        **curriculum})


def test_vector_env_sub_envs_change_each_at_their_own_reset() -> None:
    vec = make_vec_env(_cfg(), 2)
    vec.reset(seed=[0, 1])
    vec.call("set_stage", 1)
    assert vec.get_attr("stage") == (0, 0)
    vec.reset(options={"reset_mask": np.array([True, False])})
    assert vec.get_attr("stage") == (1, 0)  # sub-env 1 is still in its stage-0 episode
    assert vec.envs[0].unwrapped.force == 0.002 and vec.envs[1].unwrapped.force == 0.001  # type: ignore[attr-defined]
    vec.step(np.array([1, 1]))
    vec.step(np.array([1, 1]))
    vec.step(np.array([1, 1]))  # sub-env 1 reaches its 3-step limit: autoreset moves it too
    assert vec.get_attr("stage") == (1, 1)


# --- the source's side: every rank's episodes, the envs told, checkpoints, metrics --------------------------------
class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def call(self, name: str, stage: int) -> None:
        self.calls.append((name, stage))


class _FakeCollector:
    def __init__(self, extras: list[tuple[float, float]]) -> None:
        self.env = _Recorder()
        self.extras = extras
        self.track_extras = False

    def pop_extras(self) -> list[tuple[float, float]]:
        out, self.extras = self.extras, []
        return out


class _Logger:
    def __init__(self) -> None:
        self.points: list[tuple[int, dict[str, float]]] = []

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.points.append((step, dict(metrics)))


class _Trainer:
    is_global_zero = True

    def __init__(self) -> None:
        self.loggers = [_Logger()]


def test_every_rank_decides_on_all_ranks_episodes_and_the_envs_are_told() -> None:
    cfg = _cfg(window=4)
    extras = EpisodeExtras(cfg, budget=10_000)
    collector = _FakeCollector([(math.nan, math.nan)] * 2)
    extras.attach(collector)
    assert collector.track_extras and collector.env.calls == [("set_stage", 0)]
    other_rank = ([-90.0, -80.0], [math.nan, math.nan])
    gathered: list[Any] = []

    def gather(mine: Any) -> list[Any]:
        gathered.append(mine)
        return [mine, other_rank]  # rank order

    trainer = _Trainer()
    extras.after_collect(collector, [(-50.0, 50), (-60.0, 60)], 1000, trainer, gather)
    assert gathered == [([-50.0, -60.0], [math.nan, math.nan])]
    assert extras.curriculum is not None and extras.curriculum.stage == 1  # 4 episodes from 2 ranks: −70 ≥ −100
    assert collector.env.calls[-1] == ("set_stage", 1)
    step, metrics = trainer.loggers[0].points[-1]
    assert step == 1000 and metrics["curriculum/stage"] == 1.0
    # a checkpoint round trip: the stage, the window and the logging position
    state = extras.state_dict()
    again = EpisodeExtras(cfg, budget=10_000)
    again.load_state_dict(state)
    assert again.state_dict() == state
    fresh = _FakeCollector([])
    again.attach(fresh)
    assert fresh.env.calls == [("set_stage", 1)]  # an env rebuilt fresh moves to the restored stage


def test_shaped_returns_are_logged_apart_from_episode_returns() -> None:
    cfg = EnvConfig(id="MountainCar-v0", shaping={"potential": "mountaincar_energy", "gamma": 0.99})
    extras = EpisodeExtras(cfg, budget=1000)
    trainer = _Trainer()
    extras.after_collect(_FakeCollector([(-150.0, math.nan), (-130.0, math.nan)]), [(-200.0, 200)] * 2, 400,
                         trainer, None)
    assert trainer.loggers[0].points == [(400, {"train/shaped_return": -140.0})]


def test_collector_checkpoint_keeps_the_sub_envs_stages() -> None:
    class Right(torch.nn.Module):
        def forward(self, obs: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
            return {"action": torch.full((obs.shape[0],), 2, dtype=torch.int64)}

    cfg = _cfg()
    spec = probe_env_spec(cfg)
    a = VecEnvCollector(make_vec_env(cfg, 2), spec, Right(), steps_per_env=2, env_seeds=[0, 1])
    a.rollout()
    a.env.call("set_stage", 1)
    state = a.state_dict()
    b = VecEnvCollector(make_vec_env(cfg, 2), spec, Right(), steps_per_env=2, env_seeds=[5, 6])
    b.load_state_dict(state)
    assert b.env.get_attr("want") == (1, 1) and b.env.get_attr("stage") == (0, 0)
    ta, tb = a.rollout(), b.rollout()
    assert torch.equal(ta["next", "observation"], tb["next", "observation"])
    assert b.env.get_attr("stage") == (1, 1)


# --- validation -----------------------------------------------------------------------------------------------------
def test_a_stage_attribute_the_env_lacks_is_one_line() -> None:
    recipe = load("dqn/mountaincar-curriculum", ["env.curriculum.stages=[{attrs: {forse: 0.003}}, {}]"])
    assert recipe.env is not None
    with pytest.raises(RecipeError, match=r"stages\[0\]\.attrs\.forse: MountainCarEnv has no such attribute"):
        probe_env_spec(recipe.env)


def test_stage_kwargs_the_env_rejects_are_one_line() -> None:
    recipe = load("dqn/mountaincar-curriculum", ["env.curriculum.stages=[{kwargs: {wheels: 4}}, {}]"])
    assert recipe.env is not None
    with pytest.raises(RecipeError, match=r"stages\[0\]\.kwargs: MountainCar-v0 cannot be built"):
        probe_env_spec(recipe.env)


@pytest.mark.parametrize(("overrides", "message"), [
    (["env.curriculum.stages=[{}]"], "env.curriculum.stages: List should have at least 2 items"),
    (["env.curriculum.window=0"], "env.curriculum.window"),
    (["env.curriculum.metric=median"], "env.curriculum.metric"),
    (["env.curriculum.stages=[{force: 1}, {}]"], "env.curriculum.stages.0.force: unknown key"),
])
def test_bad_curriculum_is_one_line(overrides: list[str], message: str) -> None:
    with pytest.raises(RecipeError) as err:
        load("dqn/mountaincar-curriculum", overrides)
    assert message in err.value.message and "\n" not in err.value.message


def test_torchrl_collector_is_refused_with_a_curriculum() -> None:
    with pytest.raises(RecipeError, match=r"env\.curriculum: needs data\.collector=lean"):
        load("ppo/cartpole", ["env.curriculum={stages: [{}, {}], threshold: 100}", "data.collector=torchrl"])
