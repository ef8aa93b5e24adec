"""The one explicit registry: names in recipes → classes.

Classes are named by import path and imported on first use, so `lrl ls` and `lrl validate` stay fast and a
broken optional dependency of one algorithm never breaks the others. No registration by import side effect.
A recipe may also name a class by its import path (``algo.name: my_package.my_module:MyAlgo``): an algorithm or
data source of the user's own, with no change to lrl (docs/contract.md §6).
"""

from __future__ import annotations

import importlib
from typing import Any

ALGORITHMS: dict[str, str] = {
    "a2c": "lrl.algos.a2c.module:A2C",
    "bc": "lrl.algos.bc.module:BC",
    "ddpg": "lrl.algos.ddpg.module:DDPG",
    "dqn": "lrl.algos.dqn.module:DQN",
    "lm-reward": "lrl.algos.lm_reward.module:LMReward",
    "lm-sft": "lrl.algos.lm_sft.module:LMSFT",
    "npg": "lrl.algos.npg.module:NPG",
    "offpg": "lrl.algos.offpg.module:OffPolicyPG",
    "ppo": "lrl.algos.ppo.module:PPO",
    "ppo-kl": "lrl.algos.ppo_kl.module:PPOKL",
    "reinforce": "lrl.algos.reinforce.module:Reinforce",
    "rlhf-ppo": "lrl.algos.rlhf_ppo.module:RLHFPPO",
    "sac": "lrl.algos.sac.module:SAC",
    "sarsa": "lrl.algos.sarsa.module:SARSA",
    "td3": "lrl.algos.td3.module:TD3",
    "trpo": "lrl.algos.trpo.module:TRPO",
}

DATAMODULES: dict[str, str] = {
    "dagger": "lrl.data.dagger:DaggerDataModule",
    "demos": "lrl.data.demos:DemosDataModule",
    "hindsight": "lrl.data.hindsight:HindsightDataModule",
    "lm-prefs": "lrl.data.lm_text:LMPrefsDataModule",
    "lm-text": "lrl.data.lm_text:LMTextDataModule",
    "offline": "lrl.data.offline:OfflineDataModule",
    "onpolicy": "lrl.data.onpolicy:OnPolicyDataModule",
    "prompts": "lrl.lm.generation:PromptsDataModule",
    "replay": "lrl.data.replay:ReplayDataModule",
}


def _import(path: str, what: str, base: str) -> Any:
    from lrl.errors import RecipeError

    module, _, attr = path.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as err:
        raise RecipeError(f"{what}={path}: cannot be imported ({err})") from None
    parent = _import(base, what, base) if path != base else None
    if parent is not None and not (isinstance(cls, type) and issubclass(cls, parent)):
        raise RecipeError(f"{what}={path}: not a subclass of {base.replace(':', '.')}")
    return cls


def algorithm_class(name: str) -> Any:
    from lrl.errors import RecipeError

    if name not in ALGORITHMS and ":" not in name:
        raise RecipeError(f"unknown algorithm '{name}'; known: {', '.join(sorted(ALGORITHMS))} (or an import path "
                          "package.module:Class)")
    return _import(ALGORITHMS.get(name, name), "algo.name", "lrl.algos.base:RLModule")


def datamodule_class(name: str) -> Any:
    from lrl.errors import RecipeError

    if name not in DATAMODULES and ":" not in name:
        raise RecipeError(f"unknown data module '{name}'; known: {', '.join(sorted(DATAMODULES))} (or an import "
                          "path package.module:Class)")
    return _import(DATAMODULES.get(name, name), "data.name", "lrl.data.ranked:RankedDataModule")
