"""LineWorld: walk along a line of ``size`` cells to the right end. Actions 0 (left) and 1 (right); the observation is
the position scaled to [0, 1] and the steps taken so far scaled the same way (Box of shape (2,)); reward 1 at the
right end (terminated), -0.01 per other step. Registered with a limit of 50 steps. Renders ``rgb_array`` frames (a
row of grey cells, the walker's cell white), so evaluation videos work."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class LineWorld(gym.Env[np.ndarray, np.int64]):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}  # noqa: RUF012 (gymnasium's own convention)

    def __init__(self, size: int = 8, render_mode: str | None = None) -> None:
        if size < 2:
            raise ValueError(f"size must be at least 2, got {size}")
        self.size = size
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self._pos = 0
        self._t = 0

    def _obs(self) -> np.ndarray:
        return np.array([self._pos / (self.size - 1), min(self._t, 50) / 50], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._pos = int(self.np_random.integers(0, self.size // 2))
        self._t = 0
        return self._obs(), {}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._pos = max(0, min(self.size - 1, self._pos + (1 if int(action) == 1 else -1)))
        self._t += 1
        done = self._pos == self.size - 1
        return self._obs(), 1.0 if done else -0.01, done, False, {}

    def render(self) -> np.ndarray | None:  # type: ignore[override]
        if self.render_mode != "rgb_array":
            return None
        frame = np.full((16, 16 * self.size, 3), 96, dtype=np.uint8)
        frame[:, 16 * self._pos:16 * (self._pos + 1)] = 255
        return frame


class BlindLineWorld(LineWorld):
    """LineWorld that renders nothing (``render()`` is None): a run that needs frames must refuse it."""

    def render(self) -> np.ndarray | None:  # type: ignore[override]
        return None
