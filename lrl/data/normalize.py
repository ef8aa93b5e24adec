"""Running observation normalisation and reward scaling, owned by the DataModule.

Statistics are numpy float64, updated every step from this rank's data ("pending"), and merged into the
shared statistics at every rollout end. Under DDP the pending moments of all ranks are gathered and merged, so
every rank normalises with the same numbers and 1 or N devices run the same experiment. The statistics are part
of the DataModule's checkpoint state and of the policy returned by ``lrl.load_policy``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


class RunningMeanStd:
    """Mean and variance of a stream (parallel algorithm of Chan et al.)."""

    def __init__(self, shape: tuple[int, ...] = ()) -> None:
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = 0.0

    def update_moments(self, mean: np.ndarray, var: np.ndarray, count: float) -> None:
        if count == 0:
            return
        total = self.count + count
        delta = mean - self.mean
        m2 = self.var * self.count + var * count + delta**2 * self.count * count / total
        self.mean = self.mean + delta * count / total
        self.var = m2 / total
        self.count = total

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float64)
        self.update_moments(x.mean(axis=0), x.var(axis=0), float(x.shape[0]))

    def copy(self) -> RunningMeanStd:
        out = RunningMeanStd(self.mean.shape)
        out.mean, out.var, out.count = self.mean.copy(), self.var.copy(), self.count
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.copy(), "var": self.var.copy(), "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mean, self.var, self.count = np.array(state["mean"]), np.array(state["var"]), float(state["count"])


GatherFn = Callable[[Any], list[Any]]


class _Synced:
    """Shared statistics plus this rank's pending updates since the last sync."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shared = RunningMeanStd(shape)
        self.pending = RunningMeanStd(shape)
        self._current: RunningMeanStd | None = None

    @property
    def current(self) -> RunningMeanStd:
        if self._current is None:
            cur = self.shared.copy()
            cur.update_moments(self.pending.mean, self.pending.var, self.pending.count)
            self._current = cur
        return self._current

    def push(self, x: np.ndarray) -> None:
        self.pending.update(x)
        self._current = None

    def sync(self, gather: GatherFn | None) -> None:
        parts = gather(self.pending.state_dict()) if gather else [self.pending.state_dict()]
        for p in parts:
            self.shared.update_moments(np.asarray(p["mean"]), np.asarray(p["var"]), float(p["count"]))
        self.pending = RunningMeanStd(self.shared.mean.shape)
        self._current = None

    def state_dict(self) -> dict[str, Any]:
        return {"shared": self.shared.state_dict(), "pending": self.pending.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.shared.load_state_dict(state["shared"])
        self.pending.load_state_dict(state["pending"])
        self._current = None


class ObsNormalizer(_Synced):
    def __init__(self, shape: tuple[int, ...], clip: float, eps: float = 1e-8) -> None:
        super().__init__(shape)
        self.clip, self.eps = clip, eps

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        s = self.current
        out = (obs - s.mean) / np.sqrt(s.var + self.eps)
        return np.clip(out, -self.clip, self.clip).astype(np.float32)


class RewardScaler(_Synced):
    """Divide rewards by the running std of the discounted return (the "reward scaling" of Engstrom et al.
    2020, cited by Brunskill as making "a significant difference")."""

    def __init__(self, num_envs: int, gamma: float, clip: float, eps: float = 1e-8) -> None:
        super().__init__(())
        self.gamma, self.clip, self.eps = gamma, clip, eps
        self.returns = np.zeros(num_envs, np.float64)

    def __call__(self, reward: np.ndarray, done: np.ndarray, index: np.ndarray | None = None) -> np.ndarray:
        """Scaled rewards of all envs, or of the envs ``index`` only (complete-episode collection steps a subset)."""
        if index is None:
            self.returns = self.returns * self.gamma + reward
            self.push(self.returns)
            self.returns[done] = 0.0
        else:
            self.returns[index] = self.returns[index] * self.gamma + reward
            self.push(self.returns[index])
            self.returns[index[done]] = 0.0
        out = reward / np.sqrt(self.current.var + self.eps)
        return np.clip(out, -self.clip, self.clip).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "returns": self.returns.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.returns = np.array(state["returns"])
