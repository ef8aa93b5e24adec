"""The one explicit registry: names in recipes → classes (DESIGN.md §1).

Classes are named by import path and imported on first use, so `lrl ls` and `lrl validate` stay fast and a
broken optional dependency of one algorithm never breaks the others. No registration by import side effect.
"""

from __future__ import annotations

import importlib
from typing import Any

ALGORITHMS: dict[str, str] = {
    "a2c": "lrl.algos.a2c.module:A2C",
    "ddpg": "lrl.algos.ddpg.module:DDPG",
    "dqn": "lrl.algos.dqn.module:DQN",
    "npg": "lrl.algos.npg.module:NPG",
    "offpg": "lrl.algos.offpg.module:OffPolicyPG",
    "ppo": "lrl.algos.ppo.module:PPO",
    "ppo-kl": "lrl.algos.ppo_kl.module:PPOKL",
    "reinforce": "lrl.algos.reinforce.module:Reinforce",
    "sac": "lrl.algos.sac.module:SAC",
    "sarsa": "lrl.algos.sarsa.module:SARSA",
    "td3": "lrl.algos.td3.module:TD3",
    "trpo": "lrl.algos.trpo.module:TRPO",
}

DATAMODULES: dict[str, str] = {
    "onpolicy": "lrl.data.onpolicy:OnPolicyDataModule",
    "replay": "lrl.data.replay:ReplayDataModule",
}


def _import(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def algorithm_class(name: str) -> Any:
    from lrl.errors import RecipeError

    if name not in ALGORITHMS:
        raise RecipeError(f"unknown algorithm '{name}'; known: {', '.join(sorted(ALGORITHMS))}")
    return _import(ALGORITHMS[name])


def datamodule_class(name: str) -> Any:
    from lrl.errors import RecipeError

    if name not in DATAMODULES:
        raise RecipeError(f"unknown data module '{name}'; known: {', '.join(sorted(DATAMODULES))}")
    return _import(DATAMODULES[name])
