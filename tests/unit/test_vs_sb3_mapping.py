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


# --- off-policy entries ------------------------------------------------------------------------------------------
def test_dqn_cartpole_maps_to_rl_zoo_dqn(bench: ModuleType) -> None:
    kw = bench.dqn_kwargs(_recipe("dqn/cartpole"))
    policy = kw.pop("policy_kwargs")
    lr = kw.pop("learning_rate")  # the recipe decays it linearly to 0, as SB3's schedules do
    assert lr(1.0) == pytest.approx(2.3e-3) and lr(0.25) == pytest.approx(2.3e-3 / 4)
    # RL-Zoo's CartPole-v1 DQN; target_update_interval 256 (one copy per collection phase) makes the same target
    # networks as RL-Zoo's 10 with train_freq 256 (see dqn_kwargs)
    assert kw == {"buffer_size": 100_000, "batch_size": 64, "learning_starts": 1000, "train_freq": 256,
                  "gradient_steps": 128, "tau": 1.0, "target_update_interval": 256, "gamma": 0.99,
                  "exploration_initial_eps": 1.0, "exploration_final_eps": 0.04,
                  "exploration_fraction": pytest.approx(0.16), "max_grad_norm": 10.0}
    assert policy["net_arch"] == [256, 256] and policy["activation_fn"] is nn.ReLU
    assert policy["optimizer_class"].__name__ == "Adam" and policy["optimizer_kwargs"] == {"eps": 1e-8}


def test_dqn_exploration_fraction_follows_the_frame_budget(bench: ModuleType) -> None:
    # SB3's ε schedule is a fraction of total_timesteps: the same 8000 decay frames are 0.8 of a 10k budget
    kw = bench.dqn_kwargs(_recipe("dqn/cartpole", "budget.frames=10000"))
    assert kw["exploration_fraction"] == pytest.approx(0.8)


def test_dqn_train_freq_counts_vector_env_steps(bench: ModuleType) -> None:
    kw = bench.dqn_kwargs(_recipe("dqn/cartpole", "env.num_envs=4", "data.frames_per_step=256"))
    assert kw["train_freq"] == 64 and kw["target_update_interval"] == 256


def test_dqn_polyak_maps_with_one_update_per_env_step(bench: ModuleType) -> None:
    kw = bench.dqn_kwargs(_recipe("dqn/cartpole", "algo.target_update=polyak", "algo.tau=0.01",
                                  "data.frames_per_step=1", "data.updates_per_step=1"))
    assert (kw["tau"], kw["target_update_interval"], kw["train_freq"], kw["gradient_steps"]) == (0.01, 1, 1, 1)


def test_sac_pendulum_maps_to_sb3_sac_defaults_with_lr_1e3(bench: ModuleType) -> None:
    kw = bench.sac_kwargs(_recipe("sac/pendulum"))
    policy = kw.pop("policy_kwargs")
    assert kw == {"buffer_size": 1_000_000, "batch_size": 256, "learning_starts": 100, "train_freq": 1,
                  "gradient_steps": 1, "learning_rate": 1e-3, "gamma": 0.99, "tau": 0.005,
                  "target_update_interval": 1, "ent_coef": "auto_1", "target_entropy": "auto"}
    assert policy["net_arch"] == {"pi": [256, 256], "qf": [256, 256]} and policy["n_critics"] == 2
    assert policy["activation_fn"] is nn.ReLU and policy["optimizer_kwargs"] == {"eps": 1e-8}


def test_sac_fixed_temperature_and_entropy_target(bench: ModuleType) -> None:
    kw = bench.sac_kwargs(_recipe("sac/pendulum", "algo.autotune_alpha=false", "algo.alpha=0.2",
                                  "algo.target_entropy=-2.0", "algo.critic_hidden=[64,64]"))
    assert (kw["ent_coef"], kw["target_entropy"]) == (0.2, -2.0)
    assert kw["policy_kwargs"]["net_arch"] == {"pi": [256, 256], "qf": [64, 64]}


@pytest.mark.parametrize("name", ["td3/pendulum", "ddpg/pendulum"])
def test_td3_ddpg_pendulum_map_to_rl_zoo(bench: ModuleType, name: str) -> None:
    fn = bench.td3_kwargs if name.startswith("td3") else bench.ddpg_kwargs
    kw = fn(_recipe(name))
    policy = kw.pop("policy_kwargs")
    noise = kw.pop("action_noise")
    expected = {"buffer_size": 200_000, "batch_size": 256, "learning_starts": 10_000, "train_freq": 1,
                "gradient_steps": 1, "learning_rate": 1e-3, "gamma": 0.98, "tau": 0.005}
    if name.startswith("td3"):
        expected.update(policy_delay=2, target_policy_noise=0.2, target_noise_clip=0.5)
        assert policy.pop("n_critics") == 2
    assert kw == expected
    assert (noise.kind, noise.sigma) == ("normal", 0.1)  # RL-Zoo: noise_type normal, noise_std 0.1
    assert policy["net_arch"] == {"pi": [400, 300], "qf": [400, 300]} and policy["activation_fn"] is nn.ReLU
    assert "n_critics" not in policy  # (popped for TD3 above) SB3's DDPG sets its single critic itself


def test_ou_exploration_maps_to_sb3_ou_noise(bench: ModuleType) -> None:
    kw = bench.ddpg_kwargs(_recipe("ddpg/pendulum", "algo.exploration=ou", "algo.exploration_std=0.3",
                                   "algo.ou_theta=0.2", "algo.ou_dt=0.05"))
    assert kw["action_noise"] == bench.ActionNoise("ou", 0.3, 0.2, 0.05)


@pytest.mark.parametrize(("name", "override", "match"), [
    ("dqn/cartpole", "algo.target=double_dqn", "algo.target"),
    ("dqn/cartpole", "algo.target=double_q", "algo.target"),
    ("dqn/cartpole", "algo.loss=mse", "algo.loss"),
    ("dqn/cartpole", "algo.eps_schedule=exponential", "algo.eps_schedule"),
    ("dqn/cartpole", "algo.target_update=none", "algo.target_update"),
    ("dqn/cartpole", "algo.target_update_every=500", "algo.target_update_every"),
    ("dqn/cartpole", "algo.target_update=polyak", "polyak"),
    ("dqn/cartpole", "data.random_warmup=false", "data.random_warmup"),
    ("sac/pendulum", "algo.critic_lr=3e-4", "algo.critic_lr"),
    ("sac/pendulum", "algo.target_update_every=2", "algo.target_update_every"),
    ("sac/pendulum", "algo.log_std_min=-5", "algo.log_std_min"),
    ("td3/pendulum", "algo.actor_lr=1e-4", "algo.actor_lr"),
    ("td3/pendulum", "algo.actor_tau=0.01", "algo.actor_tau"),
    ("td3/pendulum", "algo.max_grad_norm=1.0", "algo.max_grad_norm"),
    ("ddpg/pendulum", "algo.loss=huber", "algo.loss"),
    ("ddpg/pendulum", "algo.exploration_std_final=0.01", "algo.exploration_std_final"),
])
def test_off_policy_settings_sb3_cannot_express_are_refused(bench: ModuleType, name: str, override: str,
                                                            match: str) -> None:
    recipe = _recipe(name, override)
    if "exploration_std_final" in override:
        recipe["algo"]["exploration_decay_frames"] = 5000  # a decay that actually happens
    with pytest.raises(bench.MappingError, match=match):
        bench.PAIRS[name].sb3_kwargs(recipe)


@pytest.mark.parametrize("name", ["dqn/cartpole", "sac/pendulum", "td3/pendulum", "ddpg/pendulum"])
@pytest.mark.parametrize("section", ["algo", "data"])
def test_off_policy_mappings_consume_every_key(bench: ModuleType, name: str, section: str) -> None:
    recipe = _recipe(name)
    recipe[section]["new_knob"] = 1  # e.g. an argument added to the algorithm or the replay DataModule
    with pytest.raises(bench.MappingError, match=rf"{section}\.new_knob not mapped"):
        bench.PAIRS[name].sb3_kwargs(recipe)


def test_a_replay_budget_within_the_warm_up_is_refused(bench: ModuleType) -> None:
    recipe = _recipe("td3/pendulum")  # learning_starts 10k: lrl would collect 10k frames, SB3 2k, no update
    with pytest.raises(bench.MappingError, match="learning_starts"):
        bench._check_frames(recipe, 2000)
    bench._check_frames(recipe, 10_001)
    bench._check_frames(_recipe("ppo/cartpole"), 100)  # on-policy recipes have no warm-up


def test_trpo_cartpole_maps_to_rl_zoo_trpo(bench: ModuleType) -> None:
    kw = bench.trpo_kwargs(_recipe("trpo/cartpole"))
    policy = kw.pop("policy_kwargs")
    assert kw == {"n_steps": 512, "gamma": 0.99, "gae_lambda": 0.98, "normalize_advantage": True, "target_kl": 0.01,
                  "cg_max_steps": 15, "cg_damping": 1e-3, "line_search_shrinking_factor": 0.8,
                  "line_search_max_iter": 10, "learning_rate": 1e-3, "n_critic_updates": 20, "batch_size": 512}
    assert policy["net_arch"] == {"pi": [64, 64], "vf": [64, 64]} and policy["activation_fn"] is nn.Tanh


@pytest.mark.parametrize(("override", "match"), [
    ("algo.line_search=false", "line_search"), ("algo.fvp_fraction=0.1", "fvp_fraction"),
    ("algo.fvp_method=jmj", "fvp_method"), ("algo.step_size=0.1", "step_size"),
])
def test_trpo_settings_sb3_contrib_cannot_express_are_refused(bench: ModuleType, override: str, match: str) -> None:
    with pytest.raises(bench.MappingError, match=match):
        bench.trpo_kwargs(_recipe("trpo/cartpole", override))
