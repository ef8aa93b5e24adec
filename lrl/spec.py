"""The neutral spec: what an algorithm needs to know about its data to build its networks (docs/contract.md §2).

A spec is produced by the data source itself: an environment probe (:func:`spec_from_spaces`), a dataset's
metadata (:func:`spec_from_dict`), or, for language models, a tokenizer. ``networks/`` and the algorithms depend on
this file only, never on ``data/``.

Observations are one of
- ``box``: a real vector/array of ``obs_shape``;
- ``goal``: a gymnasium ``Dict`` with ``observation``, ``desired_goal`` and ``achieved_goal`` (``obs_shape`` is the
  observation's, ``goal_shape`` the goals');
- ``tokens``: token-id sequences over ``vocab_size`` ids;
- ``image``: raw pixels, a uint8 ``Box`` of ``obs_shape = (C, H, W)``, channels first (an Atari frame stack is
  ``(4, 84, 84)``, docs/atari.md). They stay uint8 in rollouts and replay buffers; networks put a CNN in front of
  their MLP (:func:`lrl.networks.mlp.body`) that scales them to [0, 1] on the device. Observation normalisation does
  not apply to them.

Goal observations in a TensorDict or dataset: the dict's parts are flat keys ``observation``, ``desired_goal`` and
``achieved_goal`` (and ``next/observation``, ``next/desired_goal``, ``next/achieved_goal``); a policy's input is
``concat(observation, desired_goal)`` (:func:`policy_input`), ``input_dim`` wide.

Actions are ``discrete`` (``action_dim`` choices), ``continuous`` (``action_dim`` dimensions in
[``action_low``, ``action_high``]) or ``token`` (one of ``vocab_size`` ids).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from lrl.errors import RecipeError

ObsKind = Literal["box", "goal", "tokens", "image"]
ActionKind = Literal["discrete", "continuous", "token"]
GOAL_KEYS = ("observation", "desired_goal", "achieved_goal")


@dataclass(frozen=True)
class Spec:
    """Observation and action description of a data source; ``id`` names it (env id, dataset or tokenizer)."""

    id: str
    obs_shape: tuple[int, ...]
    action_kind: ActionKind
    action_dim: int  # number of actions (discrete), action dimensions (continuous), vocabulary size (token)
    action_low: tuple[float, ...] | None = None
    action_high: tuple[float, ...] | None = None
    obs_kind: ObsKind = "box"
    goal_shape: tuple[int, ...] | None = None
    vocab_size: int | None = None

    @property
    def obs_dim(self) -> int:
        return int(np.prod(self.obs_shape))

    @property
    def goal_dim(self) -> int:
        return int(np.prod(self.goal_shape)) if self.goal_shape else 0

    @property
    def input_dim(self) -> int:
        """Width of a policy's input: the observation, and for goal observations the desired goal after it."""
        return self.obs_dim + (self.goal_dim if self.obs_kind == "goal" else 0)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


EnvSpec = Spec  # the name used before Contract v2; checkpoints and user code written against it keep working


SHAPE_FIELDS = ("obs_kind", "obs_shape", "goal_shape", "action_kind", "action_dim")  # what a policy's weights fit


def spec_differences(a: Spec, b: Spec) -> tuple[str, str] | None:
    """None when ``a`` and ``b`` describe the same observations and actions (:data:`SHAPE_FIELDS`); else the fields
    that differ, as ``field=value`` lists of ``a`` and of ``b``, for a one-line error."""
    diff = [f for f in SHAPE_FIELDS if getattr(a, f) != getattr(b, f)]
    if not diff:
        return None
    return ", ".join(f"{f}={getattr(a, f)}" for f in diff), ", ".join(f"{f}={getattr(b, f)}" for f in diff)


def require_same(data: Spec, env: Spec, what: str, data_name: str = "the dataset") -> None:
    """One :class:`RecipeError` line when a dataset (``data``) and the env it is used with describe different
    observations or actions; ``what`` names the recipe key (``data.path=FILE``)."""
    diff = spec_differences(data, env)
    if diff is not None:
        raise RecipeError(f"{what}: {data_name} ({diff[0]}) does not match env.id={env.id} ({diff[1]})")


def policy_input(obs: Any) -> Any:
    """What a policy sees: the observation itself, or for a goal observation (a mapping with ``observation`` and
    ``desired_goal``, numpy or torch) the two concatenated along the last axis (``Spec.input_dim`` wide)."""
    if not hasattr(obs, "keys"):
        return obs
    parts = [obs["observation"], obs["desired_goal"]]
    if isinstance(parts[0], np.ndarray) or not hasattr(parts[0], "dim"):
        return np.concatenate([np.asarray(p, np.float32) for p in parts], axis=-1)
    import torch

    return torch.cat([p.float() for p in parts], dim=-1)


def spec_from_dict(d: dict[str, Any]) -> Spec:
    """A spec from its dict form (checkpoints, dataset metadata); unknown fields are refused with one line."""
    fields = {f.name for f in dataclasses.fields(Spec)}
    unknown = sorted(set(d) - fields)
    if unknown:
        raise RecipeError(f"spec: unknown field '{unknown[0]}'; known: {', '.join(sorted(fields))}")
    d = dict(d)
    for k in ("obs_shape", "action_low", "action_high", "goal_shape"):
        if d.get(k) is not None:
            d[k] = tuple(d[k])
    try:
        spec = Spec(**d)
    except TypeError as err:
        raise RecipeError(f"spec: {err}") from None
    kinds = ("box", "goal", "tokens", "image")
    if spec.action_kind not in ("discrete", "continuous", "token") or spec.obs_kind not in kinds:
        raise RecipeError(f"spec: action_kind={spec.action_kind!r} / obs_kind={spec.obs_kind!r} not understood")
    if spec.action_dim < 1 or any(n < 1 for n in spec.obs_shape):
        raise RecipeError(f"spec: action_dim and obs_shape must be positive (got {spec.action_dim}, {spec.obs_shape})")
    return spec


def is_image_space(space: Any) -> bool:
    """A uint8 Box of three dimensions: pixels (``image`` observations)."""
    return space.dtype == np.uint8 and len(space.shape) == 3


def spec_from_spaces(source_id: str, obs_space: Any, act_space: Any) -> Spec:
    """A spec from gymnasium spaces: Box, image (uint8 ``(C, H, W)``) or goal-Dict observations; Discrete or 1-D
    Box actions."""
    import gymnasium as gym

    goal_shape: tuple[int, ...] | None = None
    obs_kind: ObsKind = "box"
    if isinstance(obs_space, gym.spaces.Dict) and set(GOAL_KEYS) <= set(obs_space.spaces):
        parts = [obs_space.spaces[k] for k in GOAL_KEYS]
        if not all(isinstance(p, gym.spaces.Box) for p in parts):
            raise RecipeError(f"{source_id}: goal observation parts must be Box spaces ({obs_space})")
        goal_shape, obs_kind = tuple(int(n) for n in obs_space.spaces["desired_goal"].shape or ()), "goal"
        obs_space = obs_space.spaces["observation"]
    if not isinstance(obs_space, gym.spaces.Box):
        raise RecipeError(f"{source_id}: observation space {obs_space} is not supported (Box, or a Dict with "
                          f"{', '.join(GOAL_KEYS)})")
    obs_shape = tuple(obs_space.shape)
    if obs_kind == "box" and is_image_space(obs_space):
        if obs_shape[-1] <= 4 < obs_shape[0]:
            raise RecipeError(f"{source_id}: image observations {obs_shape} are channels last; lrl takes them channels "
                              "first (C, H, W): transpose them with a wrapper in env.wrappers, or use env.atari")
        obs_kind = "image"
    if isinstance(act_space, gym.spaces.Discrete):
        return Spec(source_id, obs_shape, "discrete", int(act_space.n), obs_kind=obs_kind, goal_shape=goal_shape)
    if isinstance(act_space, gym.spaces.Box) and len(act_space.shape) == 1:
        return Spec(source_id, obs_shape, "continuous", int(act_space.shape[0]),
                    tuple(float(x) for x in act_space.low), tuple(float(x) for x in act_space.high),
                    obs_kind=obs_kind, goal_shape=goal_shape)
    raise RecipeError(f"{source_id}: action space {act_space} is not supported (Discrete or 1-D Box)")
