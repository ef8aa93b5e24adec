"""Two user wrappers for tests: a reward scaler and an observation wrapper that appends a constant feature (so the
observation space changes: lrl must probe the spec after wrapping). Module-level classes, so envs wrapped in them
pickle into checkpoints."""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np


class ScaleReward(gym.RewardWrapper):
    def __init__(self, env: gym.Env, scale: float) -> None:
        super().__init__(env)
        if not isinstance(scale, int | float) or isinstance(scale, bool):
            raise TypeError(f"scale must be a number, got {scale!r}")
        self.scale = float(scale)

    def reward(self, reward: SupportsFloat) -> float:
        return float(reward) * self.scale


class AppendConstant(gym.ObservationWrapper):
    """Appends ``value`` to a flat Box observation: the space grows by one dimension."""

    def __init__(self, env: gym.Env, value: float = 1.0) -> None:
        super().__init__(env)
        space = env.observation_space
        assert isinstance(space, gym.spaces.Box) and len(space.shape) == 1, "AppendConstant needs a flat Box"
        self.value = float(value)
        self.observation_space = gym.spaces.Box(np.append(space.low, self.value).astype(space.dtype),
                                                np.append(space.high, self.value).astype(space.dtype),
                                                dtype=space.dtype)  # type: ignore[arg-type]

    def observation(self, observation: Any) -> Any:
        return np.append(observation, self.value).astype(self.observation_space.dtype)


class NotAWrapper:
    """For the test that a wrapper must be a gymnasium.Wrapper subclass."""

    def __init__(self, env: gym.Env) -> None:
        self.env = env
