"""Reward shaping of the training envs (docs/shaping.md): a gymnasium wrapper the env factory puts on every
training sub-env when the recipe has ``env.shaping`` (evaluation envs stay plain).

Potential-based shaping (Ng, Harada & Russell 1999) adds F(s, s') = γΦ(s') − Φ(s) to every reward, with γ the
learner's own discount. Along an episode the added terms telescope: the shaped discounted return from s is the
env's own minus Φ(s) (plus γ^T Φ(s_T) where the episode is cut by a time limit, which the learner's bootstrap from
s_T accounts for), so every policy's Q-values move by the same −Φ(s) and the optimal policy stays the same. That
needs Φ of a *terminated* next state to be 0 (no value lies beyond it) and Φ(s') itself on a *truncated* step (the
learner bootstraps from s' there, as from any other state).

Sub-goal bonuses (``bonuses``) pay ``bonus`` once per episode, on the first step whose next observation satisfies
a predicate. Their sum along an episode depends on the path, not only on where it starts and ends, so they are not
a potential difference and can change the optimal policy: a collectable bonus can make a detour optimal
(Randløv & Alstrøm 1998's bicycle rode in circles; tests/unit/test_shaping.py solves such a chain exactly).

The learner sees the shaped reward; the env's own reward travels in ``info[ENV_REWARD]`` so that the collector's
``train/episode_return`` stays the env's return (:func:`env_reward` reads it back from a vector env's info).
Potentials and predicates take a *batch* of observations (``[B, *obs_shape]``, or a dict of such arrays for goal
observations) and return ``[B]`` values: named ones are in :data:`POTENTIALS` and :data:`PREDICATES`, others are
``package.module:function``.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from lrl.errors import RecipeError

ENV_REWARD = "env_reward"  # the info key holding the env's own (unshaped) reward of a step

Batch = Callable[[Any], Any]  # observations [B, ...] -> values [B]

# MountainCar-v0's constants (gymnasium.envs.classic_control.mountain_car): the car's height is sin(3x) (up to an
# affine map), so gravity's force -gravity·cos(3x) derives from the potential energy gravity·sin(3x)/3.
_MC_GRAVITY, _MC_GOAL, _MC_VALLEY = 0.0025, 0.5, -math.pi / 6


def _mc_energy(x: np.ndarray, v: np.ndarray) -> np.ndarray:
    return _MC_GRAVITY * np.sin(3 * x) / 3 + 0.5 * v * v


_MC_E_LOW = float(_mc_energy(np.array(_MC_VALLEY), np.array(0.0)))  # at rest in the valley
_MC_E_GOAL = float(_mc_energy(np.array(_MC_GOAL), np.array(0.0)))  # at rest at the flag


def mountaincar_energy(obs: np.ndarray) -> np.ndarray:
    """The car's mechanical energy (potential + kinetic, per unit mass) as the fraction still missing to reach the
    flag, negated: −1 at rest in the valley, 0 with enough energy to reach the flag (capped there). Shaped like
    −(steps still to go), the optimal value's sign and trend, so Q − Φ is small, and Φ ≈ 0 where episodes
    terminate (no jump at the flag, where Φ of the terminal state is 0)."""
    obs = np.asarray(obs, np.float64)
    frac = (_mc_energy(obs[..., 0], obs[..., 1]) - _MC_E_LOW) / (_MC_E_GOAL - _MC_E_LOW)
    return np.minimum(frac, 1.0) - 1.0


def mountaincar_height(obs: np.ndarray) -> np.ndarray:
    """The car's height as a fraction of the track's range, minus 1: −1 at the lowest point, 0 at the top.
    Ignores speed, so it rewards climbing either hill even without the momentum to get over the right one."""
    x = np.asarray(obs, np.float64)[..., 0]
    return (np.sin(3 * x) + 1) / 2 - 1.0


def mountaincar_left_hill(obs: np.ndarray) -> np.ndarray:
    """The car is high up the left hill (x ≤ −0.9), the swing-back a good run needs first."""
    return np.asarray(obs)[..., 0] <= -0.9


def mountaincar_right_half(obs: np.ndarray) -> np.ndarray:
    """The car is past the middle of the right hill (x ≥ 0.2)."""
    return np.asarray(obs)[..., 0] >= 0.2


POTENTIALS: dict[str, Batch] = {"mountaincar_energy": mountaincar_energy, "mountaincar_height": mountaincar_height}
PREDICATES: dict[str, Batch] = {"mountaincar_left_hill": mountaincar_left_hill,
                                "mountaincar_right_half": mountaincar_right_half}


def resolve(ref: str, named: dict[str, Batch], what: str) -> Batch:
    """A named function of ``named`` or ``package.module:function``; one :class:`RecipeError` line otherwise."""
    if ref in named:
        return named[ref]
    if ":" not in ref:
        raise RecipeError(f"{what}={ref}: unknown; named ones: {', '.join(sorted(named))} (or an import path "
                          "package.module:function)")
    module, _, attr = ref.partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as err:
        raise RecipeError(f"{what}={ref}: cannot be imported ({err})") from None
    if not callable(fn):
        raise RecipeError(f"{what}={ref}: not a function")
    return fn  # type: ignore[no-any-return]


def _batch1(obs: Any) -> Any:
    """One observation as a batch of one (a goal observation's dict part by part)."""
    if isinstance(obs, dict):
        return {k: np.asarray(v)[None] for k, v in obs.items()}
    return np.asarray(obs)[None]


def shaping_term(phi: float, phi_next: float, gamma: float, terminated: bool) -> float:
    """F = γΦ(s') − Φ(s), with Φ(s') = 0 when s' is terminal (a truncated s' keeps its Φ: the learner bootstraps)."""
    return gamma * (0.0 if terminated else phi_next) - phi


class RewardShaping(gym.Wrapper):
    """Adds γΦ(s') − Φ(s) (``potential`` given) and once-per-episode sub-goal bonuses to the env's reward; the env's
    own reward goes to ``info[ENV_REWARD]``. Picklable when its functions are module-level (checkpoints pickle the
    vector env)."""

    def __init__(self, env: gym.Env, *, potential: Batch | None = None, scale: float = 1.0, gamma: float = 1.0,
                 bonuses: Sequence[tuple[Batch, float]] = ()) -> None:
        super().__init__(env)
        self.potential, self.scale, self.gamma = potential, float(scale), float(gamma)
        self.bonuses = list(bonuses)
        self._phi = 0.0  # Φ of the current state
        self._paid = [False] * len(self.bonuses)  # per bonus: already paid in this episode

    def phi(self, obs: Any) -> float:
        if self.potential is None:
            return 0.0
        return self.scale * float(np.asarray(self.potential(_batch1(obs))).reshape(-1)[0])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._phi = self.phi(obs)
        self._paid = [False] * len(self.bonuses)
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        shaped = float(reward)
        if self.potential is not None:
            phi_next = 0.0 if terminated else self.phi(obs)
            shaped += shaping_term(self._phi, phi_next, self.gamma, bool(terminated))
            self._phi = phi_next
        if self.bonuses:
            batch = _batch1(obs)
            for i, (when, bonus) in enumerate(self.bonuses):
                if not self._paid[i] and bool(np.asarray(when(batch)).reshape(-1)[0]):
                    self._paid[i] = True
                    shaped += bonus
        return obs, shaped, terminated, truncated, {**info, ENV_REWARD: float(reward)}


def wrap(env: gym.Env, shaping: Any) -> RewardShaping:
    """``env`` wrapped as an ``env.shaping`` section (:class:`lrl.recipe.schema.ShapingConfig`) says; its ``gamma``
    was filled in from ``algo.gamma`` by validation."""
    potential = resolve(shaping.potential, POTENTIALS, "env.shaping.potential") if shaping.potential else None
    if potential is not None and shaping.gamma is None:
        raise RecipeError("env.shaping.gamma: not resolved; potential-based shaping needs the learner's discount "
                          "(validation fills it in from algo.gamma)")
    bonuses = [(resolve(b.when, PREDICATES, f"env.shaping.bonuses[{i}].when"), float(b.bonus))
               for i, b in enumerate(shaping.bonuses)]
    return RewardShaping(env, potential=potential, scale=shaping.scale, gamma=shaping.gamma or 1.0, bonuses=bonuses)


# --- reading a vector env's info (the collector) ------------------------------------------------------------------
def env_reward(info: dict[str, Any], num_envs: int) -> np.ndarray | None:
    """The env's own rewards of a vector step whose sub-envs are shaped, else None (two dict look-ups).

    With SAME_STEP autoreset a sub-env that just ended reports its step's info under ``final_info`` (the top level
    then holds its reset info): each entry comes from where its mask says it is.
    """
    top = info.get(ENV_REWARD)
    final = info.get("final_info")
    last = final.get(ENV_REWARD) if final is not None else None
    if top is None and last is None:
        return None
    out = np.zeros(num_envs)
    if top is not None:
        out = np.where(info[f"_{ENV_REWARD}"], top, out)
    if last is not None:
        out = np.where(final[f"_{ENV_REWARD}"], last, out)  # type: ignore[index]
    return out


SUCCESS_KEYS = ("is_success", "success")


def episode_success(info: dict[str, Any], i: int | None = None) -> float:
    """1.0 / 0.0 from ``info["is_success"]`` or ``info["success"]`` at the end of an episode, NaN if neither is
    there. ``i``: the sub-env of a vector step's info (looked up in its ``final_info``); None: one env's own info."""
    if i is None:
        for key in SUCCESS_KEYS:
            if key in info:
                return float(bool(info[key]))
        return math.nan
    src = info.get("final_info", info)
    for key in SUCCESS_KEYS:
        if key in src and src.get(f"_{key}", np.ones(i + 1, bool))[i]:
            return float(bool(src[key][i]))
    return math.nan
