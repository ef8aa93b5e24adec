"""Environment factory and spec probe.

Envs are gymnasium vector envs built from picklable callables (``functools.partial(gym.make, id)``), so the
whole vector env can be pickled into a checkpoint and continue step-for-step. Sync
vectorisation in one process is the default: on few cores it is an order of magnitude faster than
multi-process stepping for cheap simulators.

Training envs (:func:`make_vec_env`) carry what ``env.curriculum`` and ``env.shaping`` ask for, each sub-env as
``RewardShaping(StagedEnv(gym.make(...)))``: the curriculum's wrapper innermost, so a stage that rebuilds the env
keeps the shaping wrapper, and the shaping wrapper outermost, so its ``info["env_reward"]`` is the env's own reward
of the stage being played. Evaluation and probes use :func:`env_fn`: the plain env, its own reward, ``env.kwargs``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
from typing import Any

import gymnasium as gym

from lrl.data.curriculum import stage_factory, staged_env
from lrl.data.shaping import wrap
from lrl.errors import RecipeError
from lrl.recipe.schema import EnvConfig
from lrl.spec import Spec, spec_from_spaces


def register_known(env_id: str) -> None:
    """Make ``env_id`` known to gymnasium where a package registers it on import: ``module:EnvId`` imports ``module``
    (gymnasium's own syntax; gymnasium would import it too), and a bare id gymnasium does not know imports
    gymnasium-robotics (``PointMaze_UMaze-v3``, ``FetchReach-v4``, ...) if it is installed. Done where envs are made,
    not only where recipes are checked, because envs are also made in processes that never read a recipe.
    gymnasium-robotics prints a version notice to stderr when imported, which would make lrl's one-line errors two
    lines; it is kept out of stderr. An import that fails raises (``check_env_id`` makes it one line)."""
    module, sep, _ = env_id.rpartition(":")
    if not sep and env_id in gym.registry:
        return
    with contextlib.redirect_stderr(io.StringIO()):
        if sep:
            importlib.import_module(module)
            return
        try:
            import gymnasium_robotics
        except ImportError:
            return  # the id stays unknown; the caller says so
    gym.register_envs(gymnasium_robotics)


def _make_one(env_id: str, max_episode_steps: int | None, kwargs: dict[str, Any],
              render_mode: str | None = None) -> gym.Env:
    register_known(env_id)
    return gym.make(env_id, max_episode_steps=max_episode_steps, render_mode=render_mode, **kwargs)


def env_fn(cfg: EnvConfig, render_mode: str | None = None) -> functools.partial[gym.Env]:
    return functools.partial(_make_one, cfg.id, cfg.max_episode_steps, dict(cfg.kwargs), render_mode)


def _make_training(cfg: EnvConfig) -> gym.Env:
    env: gym.Env
    if cfg.curriculum is not None:
        env = staged_env(stage_factory(_make_one, cfg.id), cfg.max_episode_steps, dict(cfg.kwargs), cfg.curriculum)
    else:
        env = _make_one(cfg.id, cfg.max_episode_steps, dict(cfg.kwargs))
    return wrap(env, cfg.shaping) if cfg.shaping is not None else env


def training_env_fn(cfg: EnvConfig) -> functools.partial[gym.Env]:
    """One training sub-env: the plain env, unless the recipe has a curriculum or shaping."""
    if cfg.curriculum is None and cfg.shaping is None:
        return env_fn(cfg)
    return functools.partial(_make_training, cfg)


def make_vec_env(cfg: EnvConfig, num_envs: int, vectorization: str | None = None) -> gym.vector.VectorEnv:
    """A gymnasium vector env of training envs with SAME_STEP autoreset (the final observation is in ``info``)."""
    fns = [training_env_fn(cfg) for _ in range(num_envs)]
    kwargs = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}
    if (vectorization or cfg.vectorization) == "async":
        return gym.vector.AsyncVectorEnv(fns, **kwargs)  # type: ignore[arg-type]
    return gym.vector.SyncVectorEnv(fns, **kwargs)  # type: ignore[arg-type]


def probe_env_spec(cfg: EnvConfig) -> Spec:
    """Build one env, read its spaces, close it."""
    try:
        env = env_fn(cfg)()
    except gym.error.Error as err:
        raise RecipeError(f"env.id={cfg.id}: cannot be built ({err})") from None
    except TypeError as err:
        raise RecipeError(f"env.kwargs: rejected by {cfg.id} ({err})") from None
    except Exception as err:  # an environment's own constructor can fail any way (a missing file, a bad number)
        what, first = "env.kwargs" if cfg.kwargs else "env.id", (str(err).splitlines() or [""])[0]
        raise RecipeError(f"{what}: {cfg.id} cannot be built ({type(err).__name__}: {first})") from None
    try:
        spec = spec_from_spaces(cfg.id, env.observation_space, env.action_space)
        if cfg.curriculum is not None:
            _check_stages(cfg, env)
        return spec
    finally:
        env.close()


def _check_stages(cfg: EnvConfig, plain: gym.Env) -> None:
    """Every curriculum stage builds, names attributes the env has and keeps the spaces (the networks are built
    once, for the plain env)."""
    assert cfg.curriculum is not None
    for i, stage in enumerate(cfg.curriculum.stages):
        where = f"env.curriculum.stages[{i}]"
        missing = [k for k in stage.attrs if not hasattr(plain.unwrapped, k)]
        if missing:
            raise RecipeError(f"{where}.attrs.{missing[0]}: {type(plain.unwrapped).__name__} has no such attribute")
        if not stage.kwargs:
            continue
        kw = {**cfg.kwargs, **stage.kwargs}
        steps = kw.pop("max_episode_steps", cfg.max_episode_steps)
        try:
            env = _make_one(cfg.id, steps, kw)
        except Exception as err:  # an env's constructor can fail any way
            first = (str(err).splitlines() or [""])[0]
            raise RecipeError(f"{where}.kwargs: {cfg.id} cannot be built ({type(err).__name__}: {first})") from None
        try:
            if env.observation_space != plain.observation_space or env.action_space != plain.action_space:
                raise RecipeError(f"{where}.kwargs: changes the observation or action space of {cfg.id}; every "
                                  "stage must keep the spaces of env.id/env.kwargs")
        finally:
            env.close()
