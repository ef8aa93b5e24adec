"""The hindsight source's rounds without a trainer (Ghosh et al. 2019, GCSL): round 0 acts at random, later rounds are
the learner plus noise; every stored transition carries a goal its own episode reached, with the env's reward for it;
the FIFO cap; success during collection; rounds are reproducible from the seed; bad recipes are one line."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from lrl.contract import Consumes, Schedule
from lrl.data.env import env_fn, probe_env_spec
from lrl.data.hindsight import HindsightDataModule
from lrl.errors import RecipeError
from lrl.recipe.schema import EnvConfig

pytest.importorskip("gymnasium_robotics")
ENV = EnvConfig(id="PointMaze_UMaze-v3", num_envs=3, max_episode_steps=60, kwargs={"continuing_task": False})
SPEC = probe_env_spec(ENV)


def toward_goal(obs: Any) -> np.ndarray:
    """A scripted learner: push straight at the goal (reaches goals in the same corridor, stalls at walls)."""
    return np.clip(3.0 * (obs["desired_goal"] - obs["achieved_goal"]), -1, 1).astype(np.float32)


class Scripted(HindsightDataModule):
    def learner_actions(self, obs: Any) -> np.ndarray:
        return toward_goal(obs)


def _source(**args: Any) -> Scripted:
    args = {"episodes_per_round": 4, "batch_size": 8, "steps_per_round": 1, "horizon": 10, "noise": 0.0, **args}
    dm = Scripted(env=ENV, spec=SPEC, seed=5, budget=100, clock_unit="steps", schedule=Schedule(), **args)
    dm.envs = gym.vector.SyncVectorEnv([env_fn(dm.env_cfg) for _ in range(ENV.num_envs)])
    dm.watch_envs()
    return dm


def _round(dm: Scripted) -> list[tuple[float, int]]:
    dm.phase = "collect"
    return dm._collect()


def _episodes(chunk: dict[str, torch.Tensor]) -> list[slice]:
    done = chunk["next/done"].numpy()
    ends = np.flatnonzero(done) + 1
    return [slice(a, b) for a, b in zip([0, *ends[:-1]], ends, strict=True)]


def test_round_zero_is_random_then_the_learner_acts() -> None:
    dm = _source()
    _round(dm)
    first = dm.chunks[0]
    assert first["action"].dtype == torch.float32 and first["action"].abs().max() <= 1
    learner = torch.from_numpy(toward_goal({"desired_goal": first["desired_goal"].numpy(),
                                            "achieved_goal": first["achieved_goal"].numpy()}))
    assert not torch.allclose(first["action"], learner)  # (relabelled goals aside, random actions are not it)
    _round(dm)
    episode_actions = dm.chunks[1]["action"]
    # noise 0: the learner's own actions, aimed at the env's goal (not the relabelled one): recompute on a replay
    env = env_fn(ENV)()
    from lrl.data.rounds import episode_seed

    obs, _ = env.reset(seed=episode_seed(5, 1, 0))
    n = _episodes(dm.chunks[1])[0].stop
    for t in range(n):
        a = toward_goal({k: v[None] for k, v in obs.items()})[0]
        assert np.allclose(a, episode_actions[t].numpy(), atol=1e-6)
        obs, *_ = env.step(a)


def test_every_goal_is_reached_later_in_its_own_episode_within_the_horizon() -> None:
    dm = _source(noise=0.3, random_horizon=3, horizon=7)
    for _ in range(3):
        _round(dm)
    for i, chunk in enumerate(dm.chunks):
        ahead = 3 if i == 0 else 7
        for rows in _episodes(chunk):
            goals = chunk["desired_goal"][rows]
            achieved = chunk["next/achieved_goal"][rows]
            assert torch.equal(chunk["next/desired_goal"][rows], goals)
            for t in range(len(goals)):
                hits = torch.nonzero((achieved == goals[t]).all(-1)).flatten()
                assert len(hits) and (hits >= t).any() and (hits[hits >= t] <= t + ahead - 1).any(), (t, hits)
            # PointMaze's sparse reward for the new goal: 1 within 0.45 of it
            dist = (achieved - goals).norm(dim=-1)
            assert torch.equal(chunk["next/reward"][rows], (dist <= 0.45).float())


def test_final_relabelling_and_success_during_collection() -> None:
    dm = _source(relabel="final", horizon=None)
    _round(dm)
    for rows in _episodes(dm.chunks[0]):
        assert torch.equal(dm.chunks[0]["desired_goal"][rows],
                           dm.chunks[0]["next/achieved_goal"][rows][-1].expand(rows.stop - rows.start, 2))
    flags: list[bool] = []
    for _ in range(2):
        dm.phase = "collect"
        episodes = dm.collect_round(dm.round)
        assert episodes is not None
        # continuing_task=False: an episode ends early exactly when it reached the goal
        terminated = [bool(e.terminations[-1]) for e in episodes]
        flags += dm.successes(dm.round, episodes)
        assert flags[-len(episodes):] == terminated
        dm.round += 1
    assert 0 < np.mean(flags) < 1  # a straight push reaches goals in its own corridor, not those behind a wall


def test_the_fifo_cap_keeps_the_newest_transitions() -> None:
    dm = _source(max_transitions=150, noise=0.3)
    sizes = []
    for _ in range(4):
        _round(dm)
        sizes.append(len(dm))
    assert max(sizes) <= 150 and sizes[-1] == 150
    newest = dm.chunks[-1]
    assert dm.main.data is not None and len(dm.main.data) == 150
    assert torch.equal(dm.main.data["observation"][-len(newest["observation"]):], newest["observation"])


def test_rounds_are_reproducible_from_the_seed() -> None:
    a, b = _source(noise=0.5), _source(noise=0.5)
    for dm in (a, b):
        _round(dm)
        _round(dm)
    for ca, cb in zip(a.chunks, b.chunks, strict=True):
        for k in ca:
            assert torch.equal(ca[k], cb[k]), k


def test_collection_envs_take_collect_kwargs_and_evaluation_keeps_env() -> None:
    dm = _source(collect_kwargs={"continuing_task": True, "reset_target": True}, noise=0.1)
    assert dm.env_cfg.kwargs == {"continuing_task": True, "reset_target": True}
    assert ENV.kwargs["continuing_task"] is False
    _round(dm)
    dm.phase = "collect"
    episodes = dm.collect_round(1)
    assert episodes is not None
    # a goal reached is replaced by a new one: every episode runs to the time limit
    assert all(len(e) == 60 and e.truncations[-1] and not e.terminations.any() for e in episodes)
    goals = np.concatenate([e.observations["desired_goal"] for e in episodes])  # type: ignore[index]
    assert len(np.unique(goals.round(6), axis=0)) > len(episodes)  # some episode went on to a second goal
    assert len(dm.successes(1, episodes)) == len(episodes)
    spec = HindsightDataModule.probe_spec(ENV, {"collect_kwargs": {"continuing_task": True}})
    assert spec == SPEC


def test_bad_recipes_are_one_line() -> None:
    with pytest.raises(RecipeError, match=r"^data\.collect_kwargs=.*rejected") as err:
        HindsightDataModule.probe_spec(ENV, {"collect_kwargs": {"no_such_argument": 1}})
    assert "\n" not in err.value.message
    with pytest.raises(RecipeError, match="goal env"):
        HindsightDataModule.probe_spec(EnvConfig(id="CartPole-v1"), {})
    args = {"max_transitions": 10, "batch_size": 32, "relabel": "future", "horizon": 5, "random_horizon": None}
    with pytest.raises(RecipeError, match="max_transitions=10"):
        HindsightDataModule.check_args(args, ENV, Schedule(), Consumes(sources=("hindsight",)), None)
    for key in ("horizon", "random_horizon"):
        args = {"max_transitions": None, "batch_size": 32, "relabel": "final", "horizon": None, "random_horizon": None,
                key: 5}
        with pytest.raises(RecipeError, match=rf"data\.{key}"):
            HindsightDataModule.check_args(args, ENV, Schedule(), Consumes(sources=("hindsight",)), None)
