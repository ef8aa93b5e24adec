"""Iterated goal-conditioned supervised learning with hindsight relabelling as a data source (GCSL: Ghosh et al. 2019,
"Learning to Reach Goals via Iterated Supervised Learning"; Levine CS285 §2.2). The update is behavioural cloning's,
unchanged (``algo.name: bc`` on observation ++ desired goal); what GCSL changes is the data:

1. round 0 (``random_rounds`` of them): episodes of uniformly random actions aimed at nothing;
2. later rounds: the current learner aims at the env's goals, exploring with Gaussian noise (``noise``, a fraction of
   the half action range; discrete actions: the probability of a uniformly random action);
3. every transition's desired goal is replaced by a goal its episode actually reached (:mod:`lrl.data.relabel`:
   ``final`` or ``future``, optionally at most ``horizon`` steps ahead, ``random_horizon`` in the random rounds): the
   action then *did* lead towards that
   goal, so the pair is a valid demonstration for it, whatever goal the episode was given;
4. aggregate (optionally keeping only the newest ``max_transitions``, first in, first out), train
   ``steps_per_round`` gradient steps, repeat.

The collection envs may differ from the evaluation env in their constructor arguments (``collect_kwargs``): on
PointMaze with ``continuing_task=False`` an episode ends at its goal, so no trajectory ever runs past a goal and the
data never shows how to reach the cells beyond it; collecting with ``continuing_task=True, reset_target=True`` (a new
goal each time one is reached) gives trajectories that cross the maze, and raised the measured success of the
iterated procedure from a plateau near 0.75 to 0.95+ (docs/gcbc.md). Evaluation keeps ``env:`` as written.

Why it improves: each round's relabelled data is the optimal-in-hindsight behaviour for the goals it reached, and a
policy trained on it reaches more goals, so the next round reaches farther (Ghosh et al. 2019, Theorem 3.1 bounds the
objective GCSL optimises against the goal-reaching objective).

Success during collection is each episode's ``info["success"]`` (or ``info["is_success"]``, the gymnasium-robotics
names) at any step, logged as ``hindsight/collect_success`` per round with the round's size and the aggregate's.
Rewards are recomputed for the new goals with the env's ``compute_reward`` when it has one (gymnasium-robotics goal
envs do); terminations are kept as they happened. See docs/gcbc.md.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import gymnasium as gym
import numpy as np
import torch

from lrl.contract import ROLLOUT_KEYS, ClockUnit, Consumes, Schedule
from lrl.data.ranked import distributed, gather
from lrl.data.relabel import RewardFn, relabel
from lrl.data.rounds import Episode, RoundsDataModule, StepFn, episode_seed, transitions
from lrl.errors import RecipeError
from lrl.evaluate import info_success
from lrl.recipe.schema import EnvConfig
from lrl.spec import Spec

GOAL_ROLLOUT_KEYS: tuple[str, ...] = (*ROLLOUT_KEYS, "desired_goal", "achieved_goal", "next/desired_goal",
                                      "next/achieved_goal")
def collect_env(env: EnvConfig, collect_kwargs: dict[str, Any] | None) -> EnvConfig:
    """The collection envs' config: ``env`` with ``collect_kwargs`` over its constructor arguments."""
    if not collect_kwargs:
        return env
    return env.model_copy(update={"kwargs": {**env.kwargs, **collect_kwargs}})


class SuccessRecorder(gym.Wrapper):
    """Remembers, per reset seed, whether the env reported success at some step of that episode: the rounds base
    keeps observations, actions and rewards of an episode but not its infos, and an episode's reset seed identifies
    it (:func:`lrl.data.rounds.episode_seed`)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.outcomes: dict[int, bool] = {}
        self._seed: int | None = None
        self._success: bool | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        self._seed, self._success = seed, None
        return self.env.reset(seed=seed, options=options)

    def step(self, action: Any) -> Any:
        obs, reward, term, trunc, info = self.env.step(action)
        flag = info_success(info)
        if flag is not None:
            self._success = bool(self._success) or flag
        if (term or trunc) and self._seed is not None and self._success is not None:
            self.outcomes[self._seed] = self._success
        return obs, reward, term, trunc, info


class HindsightDataModule(RoundsDataModule):
    """GCSL's relabelled aggregate as the run's data (module docstring); the learner is any algorithm that consumes
    ``hindsight`` (``bc``)."""

    source_name: ClassVar[str] = "hindsight"
    provides: ClassVar[tuple[str, ...]] = GOAL_ROLLOUT_KEYS

    def __init__(self, *, env: EnvConfig, spec: Spec, seed: int, budget: int, clock_unit: ClockUnit,
                 schedule: Schedule, episodes_per_round: int = 20, steps_per_round: int = 500,
                 relabel: Literal["final", "future"] = "future", horizon: int | None = None,
                 random_horizon: int | None = None, noise: float = 0.3,
                 random_rounds: int = 1, max_transitions: int | None = None, batch_size: int = 256,
                 collect_kwargs: dict[str, Any] | None = None, streams: dict[str, Any] | None = None) -> None:
        """
        Args:
            episodes_per_round: episodes collected each round, global across ranks.
            steps_per_round: gradient steps on the aggregate between two rounds.
            relabel: ``future`` (a uniformly drawn later achieved goal of the same episode) or ``final`` (its last).
            horizon: ``future`` goals at most this many steps ahead in the learner's rounds; None: any later step.
            random_horizon: the same for the random rounds. A random walk's position a long time later says little
                about its action now, so random data wants a shorter horizon than the learner's directed episodes
                (PointMaze: 50 and 150; 150 for both started the curve at 0.57 instead of 0.83, docs/gcbc.md).
            noise: exploration of the learner's rounds: Gaussian std as a fraction of the half action range
                (continuous), the probability of a uniformly random action (discrete).
            random_rounds: the first rounds act uniformly at random (at least 1: the untrained learner has nothing to
                show yet).
            max_transitions: keep only the newest this many transitions (first in, first out); None: keep all.
            batch_size: samples per gradient step, global across ranks.
            collect_kwargs: env constructor arguments for the collection envs only, over ``env.kwargs`` (evaluation
                keeps ``env.kwargs``). PointMaze: ``{continuing_task: true, reset_target: true}`` lets an episode go
                on to a new goal when it reaches one, so trajectories run past goals instead of stopping at them.
            streams: further named offline streams, ``{name: {path, batch_size}}``.
        """
        super().__init__(env=collect_env(env, collect_kwargs), spec=spec, seed=seed, budget=budget,
                         clock_unit=clock_unit, batch_size=batch_size, steps_per_round=steps_per_round,
                         deterministic=True, streams=streams)
        self.episodes_per_round, self.mode = episodes_per_round, relabel
        self.horizon, self.random_horizon = horizon, random_horizon
        self.noise, self.random_rounds, self.max_transitions = noise, random_rounds, max_transitions
        self._reward_fn: RewardFn | None = None

    # --- declarations ---------------------------------------------------------------------------------------------
    @classmethod
    def probe_spec(cls, env: EnvConfig | None, args: dict[str, Any]) -> Spec:
        """The env's spec, which must have goal observations (``observation``, ``desired_goal``,
        ``achieved_goal``): there is nothing to relabel otherwise."""
        spec = super().probe_spec(env, args)
        if spec.obs_kind != "goal":
            raise RecipeError(f"data.name=hindsight: env.id={spec.id} has {spec.obs_kind} observations; hindsight "
                              "relabelling needs a goal env (a Dict with observation, desired_goal, achieved_goal, "
                              "e.g. PointMaze_UMaze-v3)")
        if env is not None and args.get("collect_kwargs"):
            from lrl.data.env import probe_env_spec

            try:
                there = probe_env_spec(collect_env(env, args["collect_kwargs"]))
            except RecipeError as err:
                raise RecipeError(f"data.collect_kwargs={args['collect_kwargs']}: {err.message}") from None
            if there != spec:
                raise RecipeError(f"data.collect_kwargs: the collection env ({there}) differs from env: ({spec}) in "
                                  "its observations or actions")
        return spec

    @classmethod
    def check_args(cls, args: dict[str, Any], env: EnvConfig | None, schedule: Schedule, consumes: Consumes,
                   world: int | None, budget: int | None = None) -> None:
        super().check_args(args, env, schedule, consumes, world, budget)
        cap, size = args["max_transitions"], args["batch_size"]
        if cap is not None and cap < size:
            raise RecipeError(f"data.max_transitions={cap} is smaller than data.batch_size={size}: the aggregate "
                              "could never fill one batch; raise the cap or lower the batch size")
        for key in ("horizon", "random_horizon"):
            if args["relabel"] == "final" and args[key] is not None:
                raise RecipeError(f"data.{key}: only data.relabel=future draws goals within a horizon; with "
                                  f"data.relabel=final set data.{key}=null")

    # --- set-up ---------------------------------------------------------------------------------------------------
    def train_dataloader(self) -> Any:
        stream = super().train_dataloader()
        self.watch_envs()
        return stream

    def watch_envs(self) -> None:
        """Wrap the collection envs so that success is recorded, and take the env's ``compute_reward`` (if any) for
        the relabelled rewards."""
        assert self.envs is not None
        self.envs.envs = [e if isinstance(e, SuccessRecorder) else SuccessRecorder(e) for e in self.envs.envs]
        compute = getattr(self.envs.envs[0].unwrapped, "compute_reward", None)
        if callable(compute):
            self._reward_fn = lambda achieved, desired: compute(achieved, desired, {})

    # --- the rounds -----------------------------------------------------------------------------------------------
    def exploring(self, round_index: int) -> StepFn:
        """The step function of a round: uniform random actions in the first ``random_rounds``, else the learner's
        deterministic action plus exploration noise drawn from each episode's own generator (reproducible from the
        episode's seed alone). Actions are clipped to the bounds, so what is stored is what was executed."""
        spec = self.spec
        low = np.asarray(spec.action_low, np.float32) if spec.action_low else None
        high = np.asarray(spec.action_high, np.float32) if spec.action_high else None
        random = round_index < self.random_rounds

        def uniform(gens: list[np.random.Generator]) -> np.ndarray:
            if spec.action_kind == "discrete":
                return np.asarray([g.integers(spec.action_dim) for g in gens], np.int64)
            assert low is not None and high is not None
            return np.stack([g.uniform(low, high) for g in gens]).astype(np.float32)

        def step(obs: Any, gens: list[np.random.Generator]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
            if random:
                return uniform(gens), {}
            mine = self.learner_actions(obs)
            if spec.action_kind == "discrete":
                mine = mine.reshape(len(gens)).astype(np.int64)
                coin = np.asarray([g.random() < self.noise for g in gens], bool)
                return np.where(coin, uniform(gens), mine), {}
            assert low is not None and high is not None
            mine = mine.reshape(len(gens), spec.action_dim).astype(np.float32)
            eps = np.stack([g.standard_normal(spec.action_dim) for g in gens]).astype(np.float32)
            return np.clip(mine + self.noise * (high - low) / 2 * eps, low, high).astype(np.float32), {}

        return step

    def collect_round(self, round_index: int) -> list[Episode] | None:
        return self.collect_episodes(round_index, self.episodes_per_round, self.exploring(round_index))

    def relabel_generator(self, round_index: int, episode: int) -> np.random.Generator:
        """The generator an episode's relabelled goals are drawn from: (seed, round, episode) alone, so a resumed run
        relabels a round as the straight one did."""
        return np.random.default_rng(np.random.SeedSequence([self.seed, round_index, episode, 2]))

    def horizon_of(self, round_index: int) -> int | None:
        """The relabelling horizon of a round's ``future`` goals: ``random_horizon`` in the random rounds."""
        if self.mode != "future":
            return None
        return self.random_horizon if round_index < self.random_rounds else self.horizon

    def to_transitions(self, episodes: list[Episode]) -> dict[str, torch.Tensor]:
        """Each episode's transitions relabelled with goals it reached (:func:`lrl.data.relabel.relabel`)."""
        horizon = self.horizon_of(self.round)
        parts = [relabel(transitions([e], spec=self.spec), self.mode, self.relabel_generator(self.round, e.index),
                         horizon=horizon, reward_fn=self._reward_fn)
                 for e in episodes if len(e)]
        if not parts:
            return {}
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    def _add(self, chunk: dict[str, torch.Tensor]) -> None:
        """D ← D ∪ chunk, then drop the oldest transitions beyond ``max_transitions`` (first in, first out)."""
        cap = self.max_transitions
        if cap is not None:
            n = len(next(iter(chunk.values())))
            if n >= cap:
                self.chunks, chunk = [], {k: v[n - cap:] for k, v in chunk.items()}
            else:
                excess = len(self) + n - cap
                while excess > 0 and self.chunks:
                    first = len(next(iter(self.chunks[0].values())))
                    if first <= excess:
                        self.chunks.pop(0)
                        excess -= first
                    else:
                        self.chunks[0] = {k: v[excess:].clone() for k, v in self.chunks[0].items()}
                        excess = 0
        super()._add(chunk)

    def successes(self, round_index: int, episodes: list[Episode]) -> list[bool]:
        """The env's success flag of each episode of a round (all ranks'), where the env reports one."""
        mine: dict[int, bool] = {}
        assert self.envs is not None
        for env in self.envs.envs:
            if isinstance(env, SuccessRecorder):
                mine.update(env.outcomes)
                env.outcomes.clear()
        if distributed():
            for part in gather(mine):
                mine.update(part)
        seeds = [episode_seed(self.seed, round_index, e.index) for e in episodes if not e.cut]
        return [mine[s] for s in seeds if s in mine]

    def on_round(self, round_index: int, episodes: list[Episode], chunk: dict[str, torch.Tensor]) -> dict[str, float]:
        metrics = {"round": float(round_index), "round_transitions": float(sum(len(e) for e in episodes)),
                   "dataset_size": float(len(self))}
        flags = self.successes(round_index, episodes)
        if flags:
            metrics["collect_success"] = float(np.mean(flags))
        if episodes:
            metrics["collect_length"] = float(np.mean([len(e) for e in episodes]))
        return metrics
