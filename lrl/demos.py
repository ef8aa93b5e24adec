"""``lrl demos``: record an expert's episodes into a Minari dataset (docs/demos.md).

The expert is an lrl run (its deterministic policy) or any ``package.module:function`` (:mod:`lrl.data.expert`).
Episode ``i`` runs on its own env with seed ``seed + i`` and its own noise generator, so the dataset does not depend
on ``--num-envs`` (how many episodes run side by side, their observations batched into one expert call).
Everything is checked before anything runs, and the dataset appears whole or not at all (:func:`write_minari`).

Reference scores (Minari's ``ref_max_score`` / ``ref_min_score``, which ``minari.get_normalized_score`` uses; Fu et
al. 2020, D4RL): the mean return of the recorded episodes, and of a uniform-random policy over as many episodes (at
most :data:`RANDOM_EPISODES`) with the same seeds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lrl.data.env import env_fn, probe_env_spec
from lrl.data.expert import Expert, load_expert
from lrl.data.minari_io import check_dataset_id, write_minari
from lrl.data.wrappers import selected
from lrl.errors import RecipeError
from lrl.recipe.schema import EnvConfig
from lrl.spec import Spec

RANDOM_EPISODES = 20  # the uniform-random reference: enough for a stable mean, cheap next to the recording

# (observations of the running episodes, their episode indices) -> their actions
ActFn = Callable[[Any, list[int]], np.ndarray]


@dataclass
class DemosResult:
    dataset_id: str
    path: Path
    episodes: int
    steps: int
    return_mean: float
    return_std: float
    random_mean: float

    def summary(self) -> str:
        return (f"recorded {self.episodes} episodes, {self.steps:,} steps, return {self.return_mean:.1f} ± "
                f"{self.return_std:.1f} (uniform random {self.random_mean:.1f}) into {self.path} "
                f"(data.dataset={self.dataset_id})")


def resolve_env(expert: Expert, env_id: str | None) -> EnvConfig:
    """The env to record in: ``--env``, else the expert run's own; the expert must fit its spaces."""
    if env_id is None:
        if expert.env is None:
            raise RecipeError(f"expert={expert.ref}: an expert given as package.module:function knows no env; pass "
                              "--env ENV_ID")
        return expert.env
    if expert.env is not None and expert.env.id == env_id:
        return expert.env  # the run's own settings (kwargs, time limit) for its own env
    try:
        return EnvConfig(id=env_id)
    except ValueError as err:
        raise RecipeError(f"--env={env_id}: {err}") from None


def add_noise(actions: np.ndarray, spec: Spec, noise: float, rngs: list[np.random.Generator]) -> np.ndarray:
    """Discrete: each action replaced by a uniformly random one with probability ``noise``; continuous: Gaussian
    noise of std ``noise`` × half the action range, clipped to the bounds. One generator per episode (row)."""
    if noise == 0:
        return actions
    out = actions.copy()
    for row, rng in enumerate(rngs):
        if spec.action_kind == "discrete":
            if rng.random() < noise:
                out[row] = rng.integers(spec.action_dim)
        else:
            low, high = np.asarray(spec.action_low, np.float32), np.asarray(spec.action_high, np.float32)
            noisy = out[row] + rng.normal(size=spec.action_dim) * noise * (high - low) / 2
            out[row] = np.clip(noisy, low, high)
    return out


def _checked(actions: Any, n: int, spec: Spec, who: str) -> np.ndarray:
    """The expert's answer for ``n`` observations as ``n`` valid actions, or one line saying what is wrong."""
    arr = np.asarray(actions)
    if spec.action_kind == "discrete":
        if arr.size == n and (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            flat = arr.reshape(n)
            if np.all(flat == np.round(flat)) and np.all((flat >= 0) & (flat < spec.action_dim)):
                return flat.astype(np.int64)
        raise RecipeError(f"expert={who}: returned {arr.dtype} actions of shape {arr.shape} for {n} observations; "
                          f"expected {n} integers in [0, {spec.action_dim})")
    if arr.size == n * spec.action_dim and np.issubdtype(arr.dtype, np.number) and np.all(np.isfinite(arr)):
        low, high = np.asarray(spec.action_low, np.float32), np.asarray(spec.action_high, np.float32)
        return np.clip(arr.reshape(n, spec.action_dim).astype(np.float32), low, high)
    raise RecipeError(f"expert={who}: returned {arr.dtype} actions of shape {arr.shape} for {n} observations; "
                      f"expected finite numbers of shape ({n}, {spec.action_dim})")


def _stack(observations: list[Any]) -> Any:
    if isinstance(observations[0], dict):
        return {k: np.stack([o[k] for o in observations]) for k in observations[0]}
    return np.stack(observations)


@dataclass
class _Running:
    """An episode in progress on one env."""

    index: int
    obs: list[Any]
    actions: list[Any] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    terminations: list[bool] = field(default_factory=list)
    truncations: list[bool] = field(default_factory=list)

    def finished(self, seed: int) -> dict[str, Any]:
        return {"seed": seed + self.index, "observations": _stack(self.obs), "actions": np.stack(self.actions),
                "rewards": np.asarray(self.rewards), "terminations": np.asarray(self.terminations),
                "truncations": np.asarray(self.truncations)}


def rollouts(cfg: EnvConfig, spec: Spec, episodes: int, seed: int, num_envs: int, act: ActFn) -> list[dict[str, Any]]:
    """``episodes`` whole episodes (episode ``i`` reset with seed ``seed + i``), ``num_envs`` of them side by side;
    each as :func:`write_minari` takes it, in episode order."""
    make = env_fn(cfg)
    envs = [make() for _ in range(min(num_envs, episodes))]
    done: dict[int, dict[str, Any]] = {}
    slots: list[_Running | None] = [None] * len(envs)  # the episode each env is running
    try:
        while len(done) < episodes:
            for j, env in enumerate(envs):
                started = len(done) + sum(s is not None for s in slots)
                if slots[j] is None and started < episodes:
                    slots[j] = _Running(started, [env.reset(seed=seed + started)[0]])
            running = [(j, s) for j, s in enumerate(slots) if s is not None]
            actions = act(_stack([s.obs[-1] for _, s in running]), [s.index for _, s in running])
            for (j, ep), a in zip(running, actions, strict=True):
                obs, reward, term, trunc, _ = envs[j].step(int(a) if spec.action_kind == "discrete" else a)
                ep.obs.append(obs)
                ep.actions.append(a)
                ep.rewards.append(float(reward))
                ep.terminations.append(bool(term))
                ep.truncations.append(bool(trunc))
                if term or trunc:
                    done[ep.index] = ep.finished(seed)
                    slots[j] = None
    finally:
        for env in envs:
            env.close()
    return [done[i] for i in range(episodes)]


def _rng(seed: int, episode: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, episode, stream])


def record(expert_ref: str, episodes: int, out: str, env_id: str | None = None, noise: float = 0.0, seed: int = 0,
           store: str | Path | None = None, num_envs: int = 1) -> DemosResult:
    """Record ``episodes`` episodes of the expert ``expert_ref`` into the Minari dataset ``out`` (see the module
    docstring); every check comes first, and nothing is written unless the recording completes."""
    if episodes < 1 or num_envs < 1 or seed < 0 or not np.isfinite(noise) or noise < 0:
        raise RecipeError("--episodes and --num-envs must be >= 1, --seed and --noise >= 0")
    check_dataset_id(out, store)
    expert = load_expert(expert_ref, "expert")
    cfg = resolve_env(expert, env_id)
    try:
        spec = probe_env_spec(cfg)
    except RecipeError as err:  # "env.id=X: cannot be built (...)": name the option the user gave
        raise RecipeError(err.message.replace("env.id=", "--env=", 1) if env_id else err.message) from None
    expert.check_spec(spec, "expert")
    if spec.action_kind == "discrete" and noise > 1:
        raise RecipeError(f"--noise={noise}: for discrete actions it is the probability of a random action, in [0, 1]")

    rngs: dict[int, np.random.Generator] = {}

    def expert_act(obs: Any, ids: list[int]) -> np.ndarray:
        actions = _checked(expert(obs), len(ids), spec, expert.ref)
        return add_noise(actions, spec, noise, [rngs.setdefault(i, _rng(seed, i, 0)) for i in ids])

    def random_act(obs: Any, ids: list[int]) -> np.ndarray:
        gens = [rngs.setdefault(-1 - i, _rng(seed, i, 1)) for i in ids]
        if spec.action_kind == "discrete":
            return np.asarray([g.integers(spec.action_dim) for g in gens], np.int64)
        low, high = np.asarray(spec.action_low, np.float32), np.asarray(spec.action_high, np.float32)
        return np.stack([g.uniform(low, high).astype(np.float32) for g in gens])

    recorded = rollouts(cfg, spec, episodes, seed, num_envs, expert_act)
    baseline = rollouts(cfg, spec, min(episodes, RANDOM_EPISODES), seed, num_envs, random_act)
    returns = np.asarray([float(np.sum(ep["rewards"])) for ep in recorded])
    random_mean = float(np.mean([np.sum(ep["rewards"]) for ep in baseline]))
    noise_text = f" with noise {noise}" if noise else ""
    # episodes of an env in the recipe's own wrappers: the dataset's spaces are the wrapped ones (from the spec), and
    # it names no env (Minari would rebuild it without the wrappers)
    wrapped = [ref for ref, _ in selected(cfg, training=False)]
    in_env = f"{cfg.id} wrapped in {', '.join(wrapped)}" if wrapped else cfg.id
    path = write_minari(out, recorded, spec=spec, env_id=None if wrapped else cfg.id, env_kwargs=dict(cfg.kwargs),
                        store=store, algorithm_name=f"lrl demos: {expert.ref}{noise_text}",
                        ref_min_score=random_mean, ref_max_score=float(returns.mean()),
                        description=f"{episodes} episodes of the expert {expert.ref}{noise_text} in {in_env}, "
                                    f"seeds {seed}..{seed + episodes - 1}, recorded with lrl demos",
                        max_episode_steps=cfg.max_episode_steps)
    steps = int(sum(len(ep["rewards"]) for ep in recorded))
    return DemosResult(out, path, episodes, steps, float(returns.mean()), float(returns.std()), random_mean)
