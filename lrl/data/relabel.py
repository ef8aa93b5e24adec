"""Hindsight relabelling (Andrychowicz et al. 2017; Ghosh et al. 2019, GCSL; Levine CS285 §2.2): an episode that
missed the goal it was given still shows how to reach the goals it did reach, so its transitions are kept with the
desired goal replaced by a goal the episode actually achieved.

- ``final``: every transition gets the episode's last achieved goal (the state it ended in);
- ``future``: transition t gets the achieved goal of a uniformly drawn later state s_j, t < j ≤ T (the next state
  included), optionally at most ``horizon`` steps ahead (j ≤ t + horizon).

Why a horizon: under a deterministic (MSE-regressed) policy, a goal reached hundreds of steps later says little
about the action taken now (the trajectory wandered in between), and averaging those actions blurs the policy's
local control; goals a few dozen steps ahead keep it sharp. On PointMaze_UMaze the benchmark in docs/gcbc.md
measured this (GCSL conditions its policy on the remaining horizon for the same reason; lrl's goal policies see
observation ++ desired goal only, so the horizon is bounded in the relabelling instead).

Everything here is pure: episodes are flat transition tensors in step order (``observation``, ``desired_goal``,
``achieved_goal``, ``action``, ``next/...``, as :func:`lrl.data.rounds.transitions` makes them) and the goals are
drawn from a numpy generator the caller owns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import torch

RelabelMode = Literal["final", "future"]
# (achieved goals [T, G], desired goals [T, G]) -> rewards [T]: the env's own reward for reaching a goal
RewardFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def goal_indices(length: int, mode: RelabelMode, generator: np.random.Generator,
                 horizon: int | None = None) -> np.ndarray:
    """For each transition t of an episode of ``length`` steps, the index j into its ``next/achieved_goal`` rows
    (row j is the state after step j, so j ≥ t is "a later state, the next one included")."""
    t = np.arange(length)
    if mode == "final":
        return np.full(length, length - 1)
    if mode != "future":
        raise ValueError(f"relabel mode {mode!r}: expected 'final' or 'future'")
    high = np.full(length, length - 1) if horizon is None else np.minimum(t + horizon - 1, length - 1)
    return generator.integers(t, high + 1)  # inclusive of high: j ∈ {t, …, min(t + horizon − 1, T − 1)}


def relabel(episode: dict[str, torch.Tensor], mode: RelabelMode, generator: np.random.Generator, *,
            horizon: int | None = None, reward_fn: RewardFn | None = None) -> dict[str, torch.Tensor]:
    """One episode's transitions with ``desired_goal`` and ``next/desired_goal`` replaced by achieved goals of the same
    episode (module docstring); the input is not modified.

    Reward: with ``reward_fn`` (the env's ``compute_reward``), ``next/reward`` is recomputed for the new goal from
    ``next/achieved_goal``; without it the env's reward is kept (it then refers to the original goal).
    ``next/terminated``, ``next/truncated`` and ``next/done`` are kept as they happened: they say where the episode
    really ended, which relabelling does not change (an imitation learner reads neither).
    """
    achieved = episode["next/achieved_goal"]
    length = len(achieved)
    if length == 0:
        return dict(episode)
    if horizon is not None and horizon < 1:
        raise ValueError(f"horizon={horizon}: must be at least 1")
    idx = torch.from_numpy(goal_indices(length, mode, generator, horizon))
    goals = achieved[idx].clone()
    out = dict(episode)
    out["desired_goal"] = goals.to(episode["desired_goal"].dtype)
    out["next/desired_goal"] = goals.to(episode["next/desired_goal"].dtype).clone()
    if reward_fn is not None:
        reward = np.asarray(reward_fn(achieved.numpy(), goals.numpy()), np.float32).reshape(length)
        out["next/reward"] = torch.from_numpy(reward).to(episode["next/reward"].dtype)
    return out

