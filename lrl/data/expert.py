"""Experts for imitation: something that maps a batch of observations to the actions to imitate.

An expert is named by a string, in recipes (``data.expert``) and on the command line (``lrl demos``):

- an lrl run directory or checkpoint: its trained policy, deterministic, with its observation normalisation
  applied inside (:func:`lrl.evaluate.load_policy`); its recipe's ``env:`` is the env it was trained on;
- ``package.module:function``: any callable ``function(observations) -> actions`` on numpy batches (a scripted
  controller, another library's policy); it knows no env of its own.

Observations reach the expert raw, as the environment gives them (a batch of arrays, or for goal environments a dict
of batches ``observation`` / ``desired_goal`` / ``achieved_goal``); actions come back as a numpy batch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lrl.errors import LrlError, RecipeError
from lrl.recipe.schema import EnvConfig
from lrl.spec import Spec, spec_differences


@dataclass
class Expert:
    """``expert(obs) -> actions`` on numpy batches; ``spec`` and ``env`` when the expert is an lrl run."""

    ref: str
    act: Callable[[Any], np.ndarray]
    spec: Spec | None = None
    env: EnvConfig | None = None

    def __call__(self, obs: Any) -> np.ndarray:
        return np.asarray(self.act(obs))

    def check_spec(self, spec: Spec, what: str) -> None:
        """One line when the expert was trained on observations/actions other than ``spec`` (another env)."""
        if self.spec is None:
            return
        diff = spec_differences(self.spec, spec)
        if diff is not None:
            mine, theirs = diff
            raise RecipeError(f"{what}={self.ref}: the expert was trained on {self.spec.id} ({mine}), which does not "
                              f"match {spec.id} ({theirs})")


def _is_import_path(ref: str) -> bool:
    module, sep, attr = ref.partition(":")
    return bool(sep) and bool(attr) and all(p.isidentifier() for p in module.split(".")) and attr.isidentifier()


def load_expert(ref: str, what: str = "expert") -> Expert:
    """The expert ``ref`` names (see the module docstring); anything wrong is one :class:`RecipeError` line."""
    if _is_import_path(ref) and not Path(ref).exists():
        module, _, attr = ref.partition(":")
        try:
            fn = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as err:
            raise RecipeError(f"{what}={ref}: cannot be imported ({err})") from None
        if not callable(fn):
            raise RecipeError(f"{what}={ref}: not callable (an expert maps observations to actions)")
        return Expert(ref, fn)
    from lrl.evaluate import policy_from_checkpoint, read_checkpoint, resolve_checkpoint
    from lrl.recipe import validate

    try:
        ckpt = read_checkpoint(resolve_checkpoint(ref))
    except LrlError as err:
        raise RecipeError(f"{what}={ref}: {err.message} (an expert is an lrl run directory, a .ckpt file or "
                          "package.module:function)") from None
    policy = policy_from_checkpoint(ckpt, deterministic=True)
    recipe = validate(ckpt["lrl"]["recipe"], source=f"expert checkpoint {ref}")
    return Expert(ref, policy, policy.spec, recipe.env)
