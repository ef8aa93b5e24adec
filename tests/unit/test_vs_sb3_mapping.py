"""The lrl recipe -> SB3 keyword mappings of ``benchmarks/vs_sb3.py``: like-for-like settings for the shipped
recipes, and a loud refusal (never a silent difference) for anything the mapping does not express. Needs neither
Stable-Baselines3 nor an environment."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from torch import nn

from lrl.recipe import load


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "vs_sb3.py"
    spec = importlib.util.spec_from_file_location("vs_sb3", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["vs_sb3"] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def _recipe(name: str, *overrides: str) -> dict[str, Any]:
    return load(name, list(overrides)).to_dict()


def test_a2c_cartpole_maps_to_sb3_a2c_defaults_and_rl_zoo(bench: ModuleType) -> None:
    kw = bench.a2c_kwargs(_recipe("a2c/cartpole"))
    policy = kw.pop("policy_kwargs")
    assert kw == {"n_steps": 5, "gamma": 0.99, "gae_lambda": 1.0, "normalize_advantage": False,
                  "learning_rate": 7e-4, "vf_coef": 0.5, "ent_coef": 0.0, "max_grad_norm": 0.5}
    assert policy["net_arch"] == {"pi": [64, 64], "vf": [64, 64]} and policy["activation_fn"] is nn.Tanh
    assert policy["optimizer_class"].__name__ == "RMSprop"
    assert policy["optimizer_kwargs"] == {"alpha": 0.99, "eps": 1e-5, "weight_decay": 0}
    assert policy["ortho_init"] is True
    assert bench._env_kwargs(_recipe("a2c/cartpole")) == {"env_id": "CartPole-v1", "n_envs": 8, "env_kwargs": {}}


def test_ppo_cartpole_maps_to_rl_zoo_ppo(bench: ModuleType) -> None:
    kw = bench.ppo_kwargs(_recipe("ppo/cartpole"))
    assert (kw["n_steps"], kw["batch_size"], kw["n_epochs"], kw["gamma"], kw["gae_lambda"]) == (32, 256, 20, 0.98, 0.8)
    assert kw["learning_rate"](0.5) == pytest.approx(5e-4) and kw["clip_range"](0.5) == pytest.approx(0.1)
    assert kw["policy_kwargs"]["optimizer_kwargs"] == {"eps": 1e-5}


@pytest.mark.parametrize(("name", "override", "match"), [
    ("a2c/cartpole", "algo.shared=true", "shared"),
    ("a2c/cartpole", "algo.critic_lr=1e-3", "critic_lr"),
    ("ppo/cartpole", "algo.shared=true", "shared"),
])
def test_settings_sb3_cannot_express_are_refused(bench: ModuleType, name: str, override: str, match: str) -> None:
    fn = bench.a2c_kwargs if name.startswith("a2c") else bench.ppo_kwargs
    with pytest.raises(bench.MappingError, match=match):
        fn(_recipe(name, override))


def test_an_unmapped_hyperparameter_is_refused(bench: ModuleType) -> None:
    recipe = _recipe("a2c/cartpole")
    recipe["algo"]["new_knob"] = 1.0  # e.g. an argument added to A2C after the mapping was written
    with pytest.raises(bench.MappingError, match=r"algo\.new_knob not mapped"):
        bench.a2c_kwargs(recipe)


def test_normalisation_is_refused_until_vecnormalize_is_wired(bench: ModuleType) -> None:
    with pytest.raises(bench.MappingError, match="VecNormalize"):
        bench._env_kwargs(_recipe("a2c/inverted-pendulum"))
