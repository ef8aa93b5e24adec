"""Curriculum learning over a fixed sequence of env stages (Rossi ch. 12; docs/shaping.md), and the episode
statistics that shaping and curricula add to an environment source.

Three parts:

- :class:`StagedEnv`, a gymnasium wrapper on every training sub-env: it holds the stage it should be in and applies
  it at its next reset, never inside an episode. ``attrs`` are set on the unwrapped env (attributes a stage does not
  name go back to the env's own values); ``kwargs`` rebuild the sub-env with those ``gymnasium.make`` arguments
  (merged over ``env.kwargs``; ``max_episode_steps`` too), seeded from the old env's generator so runs stay
  reproducible.
- :class:`Curriculum`, the advance rule: a window of the last ``window`` episodes *of the current stage*; when it is
  full and its mean (return, or success rate) reaches ``threshold``, advance one stage and empty the window. At most
  one advance per check, so no stage is ever skipped. Its state is a few numbers, saved in every checkpoint.
- :class:`EpisodeExtras`, owned by an environment source: after every rollout / collection step (a boundary) it
  feeds the curriculum the episodes that finished (all ranks' episodes, gathered in rank order, so that every rank
  takes the same decision at the same boundary), tells the sub-envs the new stage, and logs ``curriculum/stage``,
  ``curriculum/metric`` and ``train/shaped_return``.
"""

from __future__ import annotations

import functools
import math
from collections import deque
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from lrl.errors import LrlError


class StagedEnv(gym.Wrapper):
    """A sub-env that moves to the stage it was told (:meth:`set_stage`) at its next reset."""

    def __init__(self, make: Callable[..., gym.Env], max_episode_steps: int | None, kwargs: dict[str, Any],
                 stages: list[dict[str, Any]], stage: int = 0) -> None:
        self._make, self._max_steps, self._base = make, max_episode_steps, dict(kwargs)
        self.stages = stages
        self.stage = stage  # the stage its current episode runs in
        self.want = stage  # the stage it moves to at its next reset
        super().__init__(self._build(stage))
        self._names = sorted({k for s in stages for k in s.get("attrs", {})})
        self._defaults = self._own_values()
        self._set_attrs(stage)

    def _own_values(self) -> dict[str, Any]:
        """The env's own values of the attributes some stage sets (restored where a stage does not name one)."""
        env = self.env.unwrapped
        missing = [k for k in self._names if not hasattr(env, k)]
        if missing:
            raise AttributeError(f"{type(env).__name__} has no attribute '{missing[0]}'")
        return {k: getattr(env, k) for k in self._names}

    def _kwargs(self, stage: int) -> tuple[int | None, dict[str, Any]]:
        kw = {**self._base, **self.stages[stage].get("kwargs", {})}
        return kw.pop("max_episode_steps", self._max_steps), kw

    def _build(self, stage: int) -> gym.Env:
        steps, kw = self._kwargs(stage)
        return self._make(steps, kw)

    def _set_attrs(self, stage: int) -> None:
        attrs = self.stages[stage].get("attrs", {})
        env = self.env.unwrapped
        for name, default in self._defaults.items():
            setattr(env, name, attrs.get(name, default))

    def set_stage(self, stage: int) -> None:
        """Move to ``stage`` at the next reset (called through ``VectorEnv.call``, sync or async)."""
        if not 0 <= stage < len(self.stages):
            raise ValueError(f"stage {stage} out of range (0..{len(self.stages) - 1})")
        self.want = stage

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        if self.want != self.stage:
            if self._kwargs(self.want) != self._kwargs(self.stage):
                if seed is None:  # the rebuilt env continues the old one's random stream, not the OS's entropy
                    seed = int(self.env.unwrapped.np_random.integers(2**31 - 1))
                self.env.close()
                self.env = self._build(self.want)
                self._defaults = self._own_values()
            self.stage = self.want
            self._set_attrs(self.stage)
        return self.env.reset(seed=seed, options=options)


def staged_env(make: Callable[..., gym.Env], max_episode_steps: int | None, kwargs: dict[str, Any],
               curriculum: Any) -> StagedEnv:
    """A :class:`StagedEnv` for an ``env.curriculum`` section (:class:`lrl.recipe.schema.CurriculumConfig`)."""
    stages = [{"kwargs": dict(s.kwargs), "attrs": dict(s.attrs)} for s in curriculum.stages]
    return StagedEnv(make, max_episode_steps, kwargs, stages)


class Curriculum:
    """When to advance: the ``metric`` over the last ``window`` episodes of the current stage reaches ``threshold``.

    ``mean_return`` averages the env's own episode returns (not shaped ones); ``success_rate`` averages
    ``info["is_success"]`` / ``info["success"]`` at episode ends and needs the env to report one of them.
    """

    def __init__(self, num_stages: int, metric: str, window: int, threshold: float) -> None:
        self.num_stages, self.metric, self.threshold = num_stages, metric, float(threshold)
        self.stage = 0
        self.values: deque[float] = deque(maxlen=window)
        self.advanced_at: list[int] = []  # the clock at each advance (logged, checkpointed)

    @property
    def last(self) -> bool:
        return self.stage == self.num_stages - 1

    def value(self) -> float:
        """The metric over the current window (NaN while it is empty)."""
        return float(np.mean(self.values)) if self.values else math.nan

    def observe(self, returns: list[float], successes: list[float]) -> None:
        """Episodes that finished in the current stage, in a fixed order (the same on every rank)."""
        if self.metric == "success_rate":
            if any(math.isnan(s) for s in successes):
                raise LrlError("env.curriculum.metric=success_rate: the env reports neither info['is_success'] nor "
                               "info['success'] at episode end; use metric=mean_return, or an env that reports it")
            self.values.extend(successes)
        else:
            self.values.extend(returns)

    def check(self, clock: int) -> bool:
        """Advance one stage when the window is full and its mean reaches the threshold; True when it advanced."""
        if self.last or len(self.values) < (self.values.maxlen or 0) or self.value() < self.threshold:
            return False
        self.stage += 1
        self.values.clear()
        self.advanced_at.append(int(clock))
        return True

    def state_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "values": list(self.values), "advanced_at": list(self.advanced_at)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stage = int(state["stage"])
        self.values.clear()
        self.values.extend(state["values"])
        self.advanced_at = list(state["advanced_at"])


class EpisodeExtras:
    """What ``env.shaping`` and ``env.curriculum`` add to an environment source, driven at its boundaries.

    Logging: rank 0 logs ``train/shaped_return`` (mean over its episodes since the last point), ``curriculum/stage``
    and ``curriculum/metric`` at most every ``budget / 500`` clock units, and at every advance.
    """

    POINTS = 500  # at most this many logged points per metric over the budget

    def __init__(self, env: Any, budget: int) -> None:
        cur = env.curriculum
        self.curriculum = Curriculum(len(cur.stages), cur.metric, cur.window, cur.threshold) if cur else None
        self.shaped = env.shaping is not None
        self.every = max(1, budget // self.POINTS)
        self._shaped_returns: list[float] = []
        self._logged_at: int | None = None

    @staticmethod
    def wanted(env: Any) -> bool:
        return env is not None and (env.shaping is not None or env.curriculum is not None)

    def attach(self, collector: Any) -> None:
        """Have the collector keep per-episode extras and put its sub-envs in the curriculum's stage (after a
        restore, too: an env that could not be pickled comes back at stage 0)."""
        collector.track_extras = True
        if self.curriculum is not None:
            collector.env.call("set_stage", self.curriculum.stage)

    def after_collect(self, collector: Any, episodes: list[tuple[float, int]], clock: int, trainer: Any,
                      gather: Callable[[Any], list[Any]] | None) -> None:
        """The episodes that finished in the last collection: feed the curriculum (every rank's, via ``gather``
        under DDP) and log. Called on every rank at the same boundary."""
        extras = collector.pop_extras()
        if self.shaped:
            self._shaped_returns += [s for s, _ in extras]
        advanced = False
        if self.curriculum is not None:
            mine = ([r for r, _ in episodes], [ok for _, ok in extras])
            ranks = gather(mine) if gather is not None else [mine]
            self.curriculum.observe([r for rs, _ in ranks for r in rs], [s for _, ss in ranks for s in ss])
            if self.curriculum.check(clock):
                collector.env.call("set_stage", self.curriculum.stage)
                advanced = True
        if advanced or self._logged_at is None or clock - self._logged_at >= self.every:
            self.log(trainer, clock)

    def log(self, trainer: Any, clock: int) -> None:
        self._logged_at = clock
        out: dict[str, float] = {}
        if self._shaped_returns:
            out["train/shaped_return"] = float(np.mean(self._shaped_returns))
            self._shaped_returns = []
        if self.curriculum is not None:
            out["curriculum/stage"] = float(self.curriculum.stage)
            if self.curriculum.values:
                out["curriculum/metric"] = self.curriculum.value()
        if out and trainer is not None and trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(out, step=clock)

    def state_dict(self) -> dict[str, Any]:
        return {"curriculum": self.curriculum.state_dict() if self.curriculum is not None else None,
                "logged_at": self._logged_at, "shaped_returns": list(self._shaped_returns)}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if not state:
            return
        if self.curriculum is not None and state.get("curriculum") is not None:
            self.curriculum.load_state_dict(state["curriculum"])
        self._logged_at = state.get("logged_at")
        self._shaped_returns = list(state.get("shaped_returns", []))


def stage_factory(make_one: Callable[..., gym.Env], env_id: str,
                  render_mode: str | None = None) -> Callable[[int | None, dict[str, Any]], gym.Env]:
    """``(max_episode_steps, kwargs) -> env`` for :class:`StagedEnv` (a picklable partial of a module function)."""
    return functools.partial(_make_stage, make_one, env_id, render_mode)


def _make_stage(make_one: Callable[..., gym.Env], env_id: str, render_mode: str | None, max_episode_steps: int | None,
                kwargs: dict[str, Any]) -> gym.Env:
    return make_one(env_id, max_episode_steps, kwargs, render_mode)
