"""Environment factory and spec probe.

Envs are gymnasium vector envs built from picklable callables (``functools.partial(gym.make, id)``), so the
whole vector env can be pickled into a checkpoint and continue step-for-step. Sync
vectorisation in one process is the default: on few cores it is an order of magnitude faster than
multi-process stepping for cheap simulators.

Training envs (:func:`make_vec_env`) carry what ``env.curriculum`` and ``env.shaping`` ask for, each sub-env as
``RewardShaping(StagedEnv(user wrappers(gym.make(...))))``: the recipe's own ``env.wrappers`` directly around the
env (the first of the list innermost; a stage that rebuilds the env rebuilds them too), the curriculum's wrapper
around them, so a stage that rebuilds the env keeps the shaping wrapper, and the shaping wrapper outermost, so its
``info["env_reward"]`` is the reward of the stage being played as the user's wrappers give it. Evaluation uses
:func:`env_fn`: the env and ``env.kwargs`` in the user's wrappers but those marked ``train_only``, its own reward.
Spec probes see the training view (every user wrapper) and check that evaluation sees the same spaces.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
from typing import Any

import gymnasium as gym

from lrl.data import atari
from lrl.data import wrappers as user_wrappers
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
    if env_id.startswith(atari.PREFIX):
        atari.register_ale()
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
              render_mode: str | None = None, wrappers: user_wrappers.Wrappers = (),
              atari_cfg: dict[str, Any] | None = None, training: bool = True) -> gym.Env:
    register_known(env_id)
    if atari_cfg is not None:
        kwargs = {**atari.make_kwargs(atari_cfg), **kwargs}
    env = gym.make(env_id, max_episode_steps=max_episode_steps, render_mode=render_mode, **kwargs)
    if atari_cfg is not None:
        env = atari.wrap(env, atari_cfg, training)
    return user_wrappers.apply(env, wrappers)


def _atari(cfg: EnvConfig) -> dict[str, Any] | None:
    return cfg.atari.model_dump() if cfg.atari is not None else None


def env_fn(cfg: EnvConfig, render_mode: str | None = None, training: bool = False) -> functools.partial[gym.Env]:
    """One env as ``env.id``/``env.kwargs`` say, in the Atari preprocessing ``env.atari`` asks for and the recipe's
    ``env.wrappers`` (``train_only`` ones, episodic life and reward clipping only with ``training``)."""
    return functools.partial(_make_one, cfg.id, cfg.max_episode_steps, dict(cfg.kwargs), render_mode,
                             user_wrappers.selected(cfg, training), _atari(cfg), training)


def _make_training(cfg: EnvConfig) -> gym.Env:
    env: gym.Env
    if cfg.curriculum is not None:
        make = functools.partial(_make_one, wrappers=user_wrappers.selected(cfg, True), atari_cfg=_atari(cfg))
        env = staged_env(stage_factory(make, cfg.id), cfg.max_episode_steps, dict(cfg.kwargs), cfg.curriculum)
    else:
        env = env_fn(cfg, training=True)()
    return wrap(env, cfg.shaping) if cfg.shaping is not None else env


def training_env_fn(cfg: EnvConfig) -> functools.partial[gym.Env]:
    """One training sub-env: the env in the recipe's wrappers, and in lrl's own if it has a curriculum or shaping."""
    if cfg.curriculum is None and cfg.shaping is None:
        return env_fn(cfg, training=True)
    return functools.partial(_make_training, cfg)


def make_vec_env(cfg: EnvConfig, num_envs: int, vectorization: str | None = None) -> gym.vector.VectorEnv:
    """A gymnasium vector env of training envs with SAME_STEP autoreset (the final observation is in ``info``)."""
    fns = [training_env_fn(cfg) for _ in range(num_envs)]
    kwargs = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}
    if (vectorization or cfg.vectorization) == "async":
        return gym.vector.AsyncVectorEnv(fns, **kwargs)  # type: ignore[arg-type]
    return gym.vector.SyncVectorEnv(fns, **kwargs)  # type: ignore[arg-type]


def probe_env_spec(cfg: EnvConfig) -> Spec:
    """Build one env in the recipe's wrappers (all of them: what training sees), read its spaces, close it."""
    try:
        env = _make_one(cfg.id, cfg.max_episode_steps, dict(cfg.kwargs), atari_cfg=_atari(cfg))
    except RecipeError:
        raise
    except gym.error.Error as err:
        raise RecipeError(f"env.id={cfg.id}: cannot be built ({err})") from None
    except TypeError as err:
        raise RecipeError(f"env.kwargs: rejected by {cfg.id} ({err})") from None
    except Exception as err:  # an environment's own constructor can fail any way (a missing file, a bad number)
        what, first = "env.kwargs" if cfg.kwargs else "env.id", (str(err).splitlines() or [""])[0]
        raise RecipeError(f"{what}: {cfg.id} cannot be built ({type(err).__name__}: {first})") from None
    env = user_wrappers.apply_checked(env, cfg)
    try:
        spec = spec_from_spaces(cfg.id, env.observation_space, env.action_space)
        if any(w.train_only for w in cfg.wrappers) or cfg.atari is not None:
            _check_evaluation_spaces(cfg, env)
        if cfg.curriculum is not None:
            _check_stages(cfg, env)
        return spec
    finally:
        env.close()


def _check_evaluation_spaces(cfg: EnvConfig, training: gym.Env) -> None:
    """Evaluation envs, without the ``train_only`` wrappers, must have the training envs' spaces (the same networks
    act in both)."""
    plain = _make_one(cfg.id, cfg.max_episode_steps, dict(cfg.kwargs), atari_cfg=_atari(cfg), training=False)
    env = user_wrappers.apply_checked(plain, cfg, training=False)
    try:
        if env.observation_space != training.observation_space or env.action_space != training.action_space:
            raise RecipeError("env.wrappers: the train_only wrappers change the observation or action space, so "
                              "evaluation envs (without them) would not fit the networks; a wrapper that changes a "
                              "space must apply to evaluation too (train_only: false)")
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
            env = _make_one(cfg.id, steps, kw, wrappers=user_wrappers.selected(cfg, True), atari_cfg=_atari(cfg))
        except Exception as err:  # an env's constructor can fail any way
            first = (str(err).splitlines() or [""])[0]
            raise RecipeError(f"{where}.kwargs: {cfg.id} cannot be built ({type(err).__name__}: {first})") from None
        try:
            if env.observation_space != plain.observation_space or env.action_space != plain.action_space:
                raise RecipeError(f"{where}.kwargs: changes the observation or action space of {cfg.id}; every "
                                  "stage must keep the spaces of env.id/env.kwargs")
        finally:
            env.close()
