"""DAgger's rounds without a trainer: what each round adds to the aggregate, who labels and who acts, the β-mixture and
its schedules, the label budget, and the episode seeding (Ross et al. 2011; Yin §2.1)."""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from lrl.contract import Consumes, Schedule
from lrl.data.dagger import DaggerDataModule, beta_at, expert_labels
from lrl.data.env import env_fn
from lrl.data.expert import load_expert
from lrl.data.rounds import episode_seed, run_episodes, transitions
from lrl.errors import RecipeError
from lrl.recipe.schema import EnvConfig
from lrl.spec import Spec
from tests.dagger_helpers import EXPERT, cartpole_cart_only, cartpole_expert, cartpole_opposite

CARTPOLE = Spec("CartPole-v1", (4,), "discrete", 2)
ENV = EnvConfig(id="CartPole-v1", num_envs=3)


class Scripted(DaggerDataModule):
    """DAgger with a scripted learner in place of the trainer's module."""

    learner: Any = staticmethod(cartpole_opposite)

    def learner_actions(self, obs: Any) -> np.ndarray:
        return self.learner(obs)


def _source(learner: Any = cartpole_opposite, **args: Any) -> Scripted:
    args = {"episodes_per_round": 4, "batch_size": 8, "steps_per_round": 1, "save_rounds": False, **args}
    dm = Scripted(env=ENV, spec=CARTPOLE, seed=5, budget=100, clock_unit="steps", schedule=Schedule(),
                  expert=EXPERT, **args)
    dm.learner = learner
    dm.envs = gym.vector.SyncVectorEnv([env_fn(ENV) for _ in range(ENV.num_envs)])
    return dm


def _round(dm: Scripted) -> list[tuple[float, int]]:
    """Collect one round as next_batch would (and take no step)."""
    dm.phase = "collect"
    return dm._collect()


def _replay(obs0_seed: int, actions: np.ndarray) -> np.ndarray:
    """The observations CartPole goes through from ``reset(seed)`` under ``actions``."""
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=obs0_seed)
    out = [obs]
    for a in actions:
        obs, *_ = env.step(int(a))
        out.append(obs)
    return np.stack(out)


def test_the_scripted_expert_balances_and_the_learners_differ_from_it() -> None:
    from lrl.evaluate import evaluate

    result = evaluate(cartpole_expert, ENV, episodes=5, seed=0)
    assert result["return_mean"] >= 450
    assert evaluate(cartpole_opposite, ENV, episodes=5, seed=0)["return_mean"] < 50
    obs = np.random.default_rng(0).normal(size=(200, 4)).astype(np.float32)
    assert (cartpole_cart_only(obs) != cartpole_expert(obs)).mean() > 0.2


def test_schedules_give_beta_per_round() -> None:
    assert [beta_at(i, "constant", 0.3, 0.5, 10) for i in range(3)] == [0.3, 0.3, 0.3]
    assert [beta_at(i, "exponential", 1.0, 0.5, 10) for i in range(4)] == [1.0, 0.5, 0.25, 0.125]  # Ross's p^i
    assert [beta_at(i, "exponential", 0.8, 0.5, 10) for i in range(3)] == [0.8, 0.4, 0.2]
    assert [beta_at(i, "linear", 1.0, 0.5, 4) for i in range(6)] == [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    dm = _source(beta_schedule="exponential", beta=0.5, beta_decay=0.5)
    assert [dm.beta_of(i) for i in range(3)] == [1.0, 0.25, 0.125]  # round 0 without demonstrations: the expert


def test_round_zero_is_the_expert_and_later_rounds_are_the_learner_labelled_by_the_expert() -> None:
    dm = _source()  # β = 0 after round 0; the learner pushes the wrong way every time
    _round(dm)
    assert dm.round == 1 and len(dm.chunks) == 1
    first = {k: v.clone() for k, v in dm.chunks[0].items()}
    assert len(first["action"]) == dm.labels == 4 * 500  # four expert episodes balance to the time limit
    sizes = [len(dm)]
    for _ in range(2):
        before, labels = len(dm), dm.labels
        finished = _round(dm)
        chunk = dm.chunks[-1]
        visited = sum(n for _, n in finished)
        # the dataset grows by exactly the visited states, each labelled once
        assert len(dm) - before == len(chunk["action"]) == visited == dm.labels - labels
        # labels are the expert's actions on the states the learner visited
        assert torch.equal(chunk["action"], torch.from_numpy(cartpole_expert(chunk["observation"].numpy())))
        # and the learner acted: the expert would have done otherwise at every step
        assert torch.equal(1 - chunk["action"], torch.from_numpy(cartpole_opposite(chunk["observation"].numpy())))
        sizes.append(len(dm))
    assert sizes[1] - sizes[0] < 4 * 50  # the learner's own episodes are short: it falls within a few steps
    for k, v in first.items():  # earlier data is kept byte for byte (D ← D ∪ D_π, never replaced)
        assert dm.chunks[0][k].dtype == v.dtype and torch.equal(dm.chunks[0][k], v)
    aggregate = dm.main.data
    assert aggregate is not None and len(aggregate) == sizes[-1]
    assert torch.equal(aggregate["observation"][: len(first["observation"])], first["observation"])


def test_visited_states_follow_the_executed_actions_from_the_episode_seed() -> None:
    envs = [env_fn(ENV)() for _ in range(2)]
    eps = run_episodes(envs, CARTPOLE, seed=5, round_index=3, indices=[0, 1, 2],
                       step=lambda obs, gens: (cartpole_cart_only(obs), {"label": cartpole_expert(obs)}))
    assert [e.index for e in eps] == [0, 1, 2]
    for e in eps:
        assert np.allclose(_replay(episode_seed(5, 3, e.index), e.actions), e.observations)
        assert e.terminations[-1] or e.truncations[-1]
    flat = transitions(eps, action=lambda e: e.records["label"], spec=CARTPOLE)
    assert torch.equal(flat["next/observation"][:-1][~flat["next/done"][:-1]],
                       flat["observation"][1:][~flat["next/done"][:-1]])
    assert flat["action"].dtype == torch.int64 and torch.equal(flat["action"],
                                                              torch.from_numpy(cartpole_expert(flat["observation"])))
    again = run_episodes(envs, CARTPOLE, seed=5, round_index=3, indices=[2],
                         step=lambda obs, gens: (cartpole_cart_only(obs), {}))
    assert np.array_equal(again[0].observations, eps[2].observations)  # an episode depends on (seed, round, index)
    other = run_episodes(envs, CARTPOLE, seed=5, round_index=4, indices=[2],
                         step=lambda obs, gens: (cartpole_cart_only(obs), {}))
    assert not np.array_equal(other[0].observations[0], eps[2].observations[0])


@pytest.mark.parametrize("beta", [0.2, 0.5, 0.9])
def test_the_mixture_executes_the_expert_with_probability_beta(beta: float) -> None:
    dm = _source(learner=cartpole_cart_only, beta=beta, episodes_per_round=24)
    executed_expert, steps = 0, 0
    for round_index in (1, 2):  # (round 0 is the expert alone)
        eps = dm.collect_round(round_index)
        assert eps is not None
        for e in eps:
            flags = e.records["expert"]
            executed_expert += int(flags.sum())
            steps += len(flags)
            # whichever acted, the expert labelled the state; the executed action is the chosen one's
            obs = e.observations[:-1]
            assert np.array_equal(e.records["label"], cartpole_expert(obs))
            assert np.array_equal(e.actions, np.where(flags, cartpole_expert(obs), cartpole_cart_only(obs)))
    std = math.sqrt(beta * (1 - beta) / steps)
    assert steps > 400 and abs(executed_expert / steps - beta) < 4 * std, (executed_expert / steps, beta, steps)


def test_the_label_budget_is_exact_and_training_goes_on_after_it() -> None:
    dm = _source(label_budget=2 * 500 + 37, episodes_per_round=2)
    rounds = 0
    while dm.collecting:
        _round(dm)
        rounds += 1
        assert rounds < 50
    assert dm.labels == len(dm) == 2 * 500 + 37  # no demonstrations: every sample is a label
    last = dm.chunks[-1]
    assert bool(last["next/truncated"][-1])  # the last episode was cut at the budget, marked truncated
    assert dm.round == rounds - 1  # the round that found the budget spent collected nothing
    before = len(dm)
    dm.next_batch()
    assert len(dm) == before and dm.phase == "train"


def test_a_cap_cuts_open_episodes_exactly_and_runs_the_lowest_indexed_first() -> None:
    envs = [env_fn(ENV)() for _ in range(3)]
    step = lambda obs, gens: (cartpole_opposite(obs), {})  # noqa: E731 - short episodes (~9 steps)
    eps = run_episodes(envs, CARTPOLE, seed=0, round_index=1, indices=list(range(10)), step=step, cap=31)
    assert sum(len(e) for e in eps) == 31
    assert [e.index for e in eps] == list(range(len(eps)))
    assert any(e.cut for e in eps) and all(e.truncations[-1] for e in eps if e.cut)
    assert run_episodes(envs, CARTPOLE, seed=0, round_index=1, indices=[0, 1], step=step, cap=0) == []


def test_expert_labels_are_checked() -> None:
    expert = load_expert(EXPERT)
    obs = np.zeros((3, 4), np.float32)
    assert expert_labels(expert, obs, CARTPOLE, 3).dtype == np.int64
    wrong = load_expert("tests.dagger_helpers:cartpole_expert")
    wrong.act = lambda o: np.zeros((3, 2))
    with pytest.raises(RecipeError, match=r"data\.expert=.*returned actions of shape \(3, 2\)"):
        expert_labels(wrong, obs, CARTPOLE, 3)


def test_check_args_refuses_a_budget_smaller_than_a_batch() -> None:
    args = {"label_budget": 10, "batch_size": 32, "dataset": None}
    consumes = Consumes(sources=("dagger",))
    with pytest.raises(RecipeError, match=r"label_budget=10 is smaller than data\.batch_size=32"):
        DaggerDataModule.check_args(args, ENV, Schedule(), consumes, 1)
    with pytest.raises(RecipeError, match=r"env\.vectorization=async"):
        DaggerDataModule.check_args(args, ENV.model_copy(update={"vectorization": "async"}), Schedule(), consumes, 1)


def test_demonstrations_are_round_zero_and_each_round_is_saved_as_a_minari_dataset(tmp_path: Any) -> None:
    from lrl.data.minari_io import read_minari, write_minari

    expert_round = _source(episodes_per_round=2)
    episodes = expert_round.collect_round(0)
    assert episodes is not None
    demos = [{"observations": e.observations, "actions": e.actions, "rewards": e.rewards,
              "terminations": e.terminations, "truncations": e.truncations} for e in episodes]
    write_minari("cartpole/expert-v0", demos, spec=CARTPOLE, env_id="CartPole-v1")
    dm = _source(dataset="cartpole/expert-v0", beta_schedule="exponential", beta=1.0, beta_decay=0.5)
    dm._start()
    assert dm.round == 1 and dm.phase == "train" and len(dm) == 1000 and dm.labels == 0  # demos are not queries
    assert torch.equal(dm.chunks[0]["observation"], transitions(episodes)["observation"])
    assert set(dm.chunks[0]) == {"observation", "action", "next/observation", "next/reward", "next/terminated",
                                 "next/truncated", "next/done"}
    eps = dm.collect_round(1)
    assert eps is not None and 0 < np.mean(np.concatenate([e.records["expert"] for e in eps])) < 1  # β_1 = 0.5
    dm._add(dm.to_transitions(eps))
    saved = dm.save_round(tmp_path, 1, eps)
    assert saved == tmp_path / "dagger" / "round-001-v0"
    flat, spec = read_minari(str(saved))
    assert spec.action_kind == "discrete" and len(flat["action"]) == len(dm.chunks[1]["action"])
    for key in ("observation", "action", "next/observation", "next/done"):
        assert torch.equal(flat[key], dm.chunks[1][key]), key
    assert dm.save_round(tmp_path, 1, eps) == saved  # a round left by an interrupted run is replaced


def test_under_ddp_the_ranks_split_the_cap_and_meet_it_exactly() -> None:
    """Each rank runs every W-th episode and takes its share of the remaining labels; together they meet it."""
    dm = _source(episodes_per_round=5)
    step = dm.mixture(1.0)
    got = []
    for rank in (0, 1):
        dm.world_size, dm.rank = 2, rank
        eps = dm.collect_episodes(1, 5, step, cap=37)
        assert [e.index for e in eps] == list(range(rank, 5, 2))[: len(eps)]
        got.append(sum(len(e) for e in eps))
    assert got == [19, 18]


def test_labels_per_round_caps_every_round_so_a_small_budget_spans_several() -> None:
    dm = _source(cartpole_expert, label_budget=250, labels_per_round=50, episodes_per_round=2)  # 500-step episodes
    sizes = []
    while dm.collecting:
        before = len(dm)
        _round(dm)
        sizes.append(len(dm) - before)
        assert len(sizes) < 50
    assert sizes[:-1] == [50] * 5 and sizes[-1] == 0  # five rounds of exactly 50 labels, then the budget is spent
    assert dm.labels == len(dm) == 250
