"""Hindsight relabelling (lrl.data.relabel) on hand-made episodes: every transition gets the final / a later achieved
goal of its own episode, within the horizon; rewards follow the env's reward for the new goal; the input is untouched;
and a goal policy's input is observation ++ the relabelled goal."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lrl.data.relabel import goal_indices, relabel
from lrl.spec import policy_input


def _episode(length: int, offset: float = 0.0) -> dict[str, torch.Tensor]:
    """Achieved goal of state s_t is (t + offset, -(t + offset)): which state a goal came from is readable off it."""
    t = torch.arange(length + 1, dtype=torch.float32) + offset
    achieved = torch.stack([t, -t], dim=1)
    return {
        "observation": torch.randn(length, 4),
        "desired_goal": torch.full((length, 2), 99.0),
        "achieved_goal": achieved[:-1],
        "action": torch.randn(length, 2),
        "next/observation": torch.randn(length, 4),
        "next/desired_goal": torch.full((length, 2), 99.0),
        "next/achieved_goal": achieved[1:],
        "next/reward": torch.zeros(length),
        "next/terminated": torch.zeros(length, dtype=torch.bool),
        "next/truncated": torch.tensor([False] * (length - 1) + [True]),
        "next/done": torch.tensor([False] * (length - 1) + [True]),
    }


def _source_state(goals: torch.Tensor, offset: float = 0.0) -> np.ndarray:
    return (goals[:, 0] - offset).numpy().astype(int)  # the index of the state the goal was achieved in


def test_final_puts_the_last_achieved_goal_everywhere() -> None:
    ep = _episode(6)
    out = relabel(ep, "final", np.random.default_rng(0))
    assert torch.equal(out["desired_goal"], ep["next/achieved_goal"][-1].expand(6, 2))
    assert torch.equal(out["next/desired_goal"], out["desired_goal"])
    assert torch.equal(out["desired_goal"][0], torch.tensor([6.0, -6.0]))  # s_T of a 6-step episode


def test_future_draws_a_later_state_of_the_same_episode_next_state_included() -> None:
    ep = _episode(40)
    seen = np.zeros((40, 41), bool)
    for s in range(50):
        out = relabel(ep, "future", np.random.default_rng(s))
        src = _source_state(out["desired_goal"])
        t = np.arange(40)
        assert ((src > t) & (src <= 40)).all()  # s_j with t < j ≤ T
        seen[t, src] = True
        assert torch.equal(out["next/desired_goal"], out["desired_goal"])  # the goal does not change within a step
    late = np.arange(35, 40)  # at most 5 choices each: 50 draws see every one
    assert seen[late, late + 1].all() and seen[late, 40].all()  # the next state and the last one are both drawn


def test_future_within_a_horizon() -> None:
    ep = _episode(30)
    for s in range(20):
        src = _source_state(relabel(ep, "future", np.random.default_rng(s), horizon=5)["desired_goal"])
        t = np.arange(30)
        assert ((src > t) & (src <= np.minimum(t + 5, 30))).all()
    one = _source_state(relabel(ep, "future", np.random.default_rng(0), horizon=1)["desired_goal"])
    assert (one == np.arange(30) + 1).all()  # horizon 1: the next state's achieved goal


def test_future_is_roughly_uniform() -> None:
    idx = np.stack([goal_indices(4, "future", np.random.default_rng(s)) for s in range(4000)])
    counts = np.bincount(idx[:, 0], minlength=4) / 4000  # transition 0: j ∈ {0, 1, 2, 3}
    assert np.allclose(counts, 0.25, atol=0.03)
    assert (idx[:, 3] == 3).all()


def test_each_episode_gets_only_its_own_goals() -> None:
    a, b = _episode(5, offset=0.0), _episode(7, offset=1000.0)
    ra = relabel(a, "future", np.random.default_rng(1))
    rb = relabel(b, "future", np.random.default_rng(1))
    assert (ra["desired_goal"][:, 0] <= 5).all() and (rb["desired_goal"][:, 0] >= 1000).all()


def test_rewards_are_recomputed_for_the_new_goal_and_the_input_is_untouched() -> None:
    ep = _episode(8)
    before = {k: v.clone() for k, v in ep.items()}

    def sparse(achieved: np.ndarray, desired: np.ndarray) -> np.ndarray:  # PointMaze: within 0.45 of the goal
        return (np.linalg.norm(achieved - desired, axis=-1) <= 0.45).astype(np.float64)

    out = relabel(ep, "future", np.random.default_rng(3), horizon=3, reward_fn=sparse)
    src = _source_state(out["desired_goal"])
    assert torch.equal(out["next/reward"], torch.from_numpy((src == np.arange(8) + 1).astype(np.float32)))
    assert out["next/reward"].dtype == torch.float32
    final = relabel(ep, "final", np.random.default_rng(3), reward_fn=sparse)
    assert final["next/reward"].tolist() == [0.0] * 7 + [1.0]
    for k in ("next/terminated", "next/truncated", "next/done", "action", "observation"):
        assert torch.equal(out[k], ep[k])  # where the episode really ended does not change
    for k, v in before.items():
        assert torch.equal(ep[k], v)
    kept = relabel(ep, "final", np.random.default_rng(3))
    assert torch.equal(kept["next/reward"], ep["next/reward"])  # without the env's reward: kept


def test_the_policy_input_concatenates_the_relabelled_goal() -> None:
    ep = relabel(_episode(4), "final", np.random.default_rng(0))
    x = policy_input({"observation": ep["observation"], "desired_goal": ep["desired_goal"]})
    assert x.shape == (4, 6)
    assert torch.equal(x[:, :4], ep["observation"]) and torch.equal(x[:, 4:], ep["desired_goal"])


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="horizon"):
        relabel(_episode(3), "future", np.random.default_rng(0), horizon=0)
    with pytest.raises(ValueError, match="mode"):
        goal_indices(3, "nearest", np.random.default_rng(0))  # type: ignore[arg-type]
    empty = {k: v[:0] for k, v in _episode(2).items()}
    assert len(relabel(empty, "future", np.random.default_rng(0))["desired_goal"]) == 0
