"""Environment factory and spec probe.

Envs are gymnasium vector envs built from picklable callables (``functools.partial(gym.make, id)``), so the
whole vector env can be pickled into a checkpoint and continue step-for-step. Sync
vectorisation in one process is the default: on few cores it is an order of magnitude faster than
multi-process stepping for cheap simulators.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
from typing import Any

import gymnasium as gym

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


def make_vec_env(cfg: EnvConfig, num_envs: int, vectorization: str | None = None) -> gym.vector.VectorEnv:
    """A gymnasium vector env with SAME_STEP autoreset (the final observation is in ``info``)."""
    fns = [env_fn(cfg) for _ in range(num_envs)]
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
        return spec_from_spaces(cfg.id, env.observation_space, env.action_space)
    finally:
        env.close()
