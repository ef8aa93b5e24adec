"""A recipe's own gymnasium wrappers (``env.wrappers``, docs/environments.md).

Each entry names a ``gymnasium.Wrapper`` subclass as ``package.module:ClassName`` with the keyword arguments of its
constructor. The env factory (:mod:`lrl.data.env`) puts them directly around ``gym.make``, the first of the list
innermost, inside lrl's own curriculum and shaping wrappers. They are imported where envs are built, in every
process (vector env workers, DDP ranks, a resumed run), from the recipe's strings. Envs are pickled into
checkpoints with their wrappers, so a wrapper class must be defined at module level.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

import gymnasium as gym

from lrl.errors import RecipeError

Wrappers = tuple[tuple[str, dict[str, Any]], ...]  # (package.module:ClassName, kwargs), innermost first


def selected(cfg: Any, training: bool) -> Wrappers:
    """The wrappers of an ``env`` section (:class:`lrl.recipe.schema.EnvConfig`) a training or an evaluation env
    gets, as picklable pairs."""
    return tuple((w.wrapper, dict(w.kwargs)) for w in cfg.wrappers if training or not w.train_only)


def wrapper_class(ref: str, where: str = "env.wrappers") -> type[gym.Wrapper]:
    """The class ``package.module:ClassName`` names, a ``gymnasium.Wrapper`` subclass; one line otherwise."""
    module, _, name = ref.partition(":")
    try:
        obj: Any = importlib.import_module(module)
    except Exception as err:  # an import can fail any way
        raise RecipeError(f"{where}={ref}: module '{module}' cannot be imported ({type(err).__name__}: "
                          f"{(str(err).splitlines() or [''])[0]})") from None
    for part in name.split("."):
        if not hasattr(obj, part):
            raise RecipeError(f"{where}={ref}: module '{module}' has no '{name}'")
        obj = getattr(obj, part)
    if not isinstance(obj, type) or not issubclass(obj, gym.Wrapper):
        what = f"class {obj.__name__}" if isinstance(obj, type) else f"a {type(obj).__name__}"
        raise RecipeError(f"{where}={ref}: is {what}, not a gymnasium.Wrapper subclass")
    return obj


def check(cfg: Any) -> None:
    """Every wrapper of an ``env`` section imports and is a wrapper class (before any env is built)."""
    for i, w in enumerate(cfg.wrappers):
        wrapper_class(w.wrapper, f"env.wrappers[{i}]")


def apply(env: gym.Env, wrappers: Sequence[tuple[str, dict[str, Any]]]) -> gym.Env:
    """``env`` in ``wrappers``, the first innermost."""
    for ref, kwargs in wrappers:
        env = wrapper_class(ref)(env, **kwargs)
    return env


def apply_checked(env: gym.Env, cfg: Any, training: bool = True) -> gym.Env:
    """:func:`apply` for a probe: a wrapper that cannot be built closes ``env`` and says which, in one line."""
    for i, w in enumerate(cfg.wrappers):
        if not training and w.train_only:
            continue
        try:
            env = wrapper_class(w.wrapper, f"env.wrappers[{i}]")(env, **w.kwargs)
        except RecipeError:
            env.close()
            raise
        except Exception as err:  # a wrapper's constructor can fail any way
            env.close()
            first = (str(err).splitlines() or [""])[0]
            with_kwargs = f" with kwargs {dict(w.kwargs)}" if w.kwargs else ""
            raise RecipeError(f"env.wrappers[{i}]={w.wrapper}: cannot wrap {cfg.id}{with_kwargs} "
                              f"({type(err).__name__}: {first})") from None
    return env
