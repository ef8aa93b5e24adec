"""The lrl recipe -> TRL keyword mappings of ``benchmarks/lm_compare.py`` and the preference pairs ``lm_trl.py``
builds: same optimiser steps on same-sized batches, and a loud refusal for anything TRL cannot express. Needs
neither TRL nor transformers (resolved recipe sections are written out here)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _module(name: str) -> ModuleType:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cmp() -> ModuleType:
    return _module("lm_compare")


def _reward(**algo: Any) -> dict[str, Any]:
    a = {"name": "lm-reward", "loss": "kwise", "init": "policy", "frozen_body": False, "lr": 1e-3,
         "lr_schedule": "constant", "max_grad_norm": 1.0, "adam_eps": 1e-8, "n_layer": 1, "n_embd": 32, "n_head": 2,
         "n_positions": 32, "eval_every": 50, **algo}
    d = {"name": "lm-prefs", "task": "reverse", "policy": "sft", "prompts": 2000, "test_prompts": 200, "k": 4,
         "noise": 0.1, "temperature": 1.0, "max_new_tokens": 6, "batch_size": 32, "max_length": 16, "streams": None}
    return {"seed": 3, "algo": a, "data": d, "budget": {"steps": 500}}


def _rl(advantage: str = "grpo", k: int = 4, ppb: int = 16, **algo: Any) -> dict[str, Any]:
    a = {"name": "rlhf-ppo", "policy_path": "sft", "reward_path": "rm", "advantage": advantage, "epochs": 4,
         "minibatch_size": 16, "lr": 1e-4, "lr_schedule": "constant", "adam_eps": 1e-5, "temperature": 1.0,
         "kl_coef": 0.1, "kl_target": None, "kl_horizon": 256, "gae_lambda": 0.95, "clip_range": 0.2,
         "clip_range_vf": 0.2, "vf_coef": 0.1, "ent_coef": 0.0, "whiten_reward": False, "normalize_advantage": True,
         "ptx_coef": 0.0, "max_grad_norm": 1.0, **algo}
    d = {"name": "prompts", "task": "reverse", "policy": "sft", "prompts_per_batch": ppb, "samples_per_prompt": k,
         "max_new_tokens": 8, "train_prompts": 2048, "eval_prompts": 256, "eval_samples_shown": 16,
         "ptx_batch_size": 0, "ptx_corpus": 1024, "streams": None}
    return {"seed": 3, "algo": a, "data": d, "budget": {"prompts": 2048}}


def test_kwise_reward_model_is_all_pairs_of_a_batch_of_prompts(cmp: ModuleType) -> None:
    out = cmp.map_reward(_reward())
    args = out["args"]
    assert out["pairs"] == "all"
    assert args["per_device_train_batch_size"] == 32 * 6 and args["max_steps"] == 500
    assert (args["learning_rate"], args["adam_epsilon"], args["max_grad_norm"]) == (1e-3, 1e-8, 1.0)
    assert args["lr_scheduler_type"] == "constant" and args["weight_decay"] == 0.0 and args["seed"] == 3
    assert not args["bf16"] and not args["gradient_checkpointing"]  # RewardConfig's defaults would be True
    assert cmp.map_reward(_reward(loss="pairwise"))["args"]["per_device_train_batch_size"] == 32


@pytest.mark.parametrize("algo", [{"loss": "four_way"}, {"frozen_body": True}, {"init": "tiny"}, {"beta": 1}])
def test_reward_settings_trl_cannot_express_are_refused(cmp: ModuleType, algo: dict[str, Any]) -> None:
    with pytest.raises(cmp.Unmappable):
        cmp.map_reward(_reward(**algo))


def test_grpo_takes_the_same_optimiser_steps_on_the_same_minibatches(cmp: ModuleType) -> None:
    out = cmp.map_grpo(_rl(), "grpo")
    args = out["args"]
    assert out["collections"] == 2048 // 16 and out["sequences_per_collection"] == 64
    assert args["per_device_train_batch_size"] == 16 and args["steps_per_generation"] == 4
    assert args["num_generations"] == 4 and args["num_iterations"] == 4
    assert args["max_steps"] == 128 * 4 * 4  # collections × minibatches per collection × epochs
    assert (args["beta"], args["epsilon"], args["loss_type"], args["scale_rewards"]) == (0.1, 0.2, "bnpo", "group")
    assert (args["temperature"], args["top_k"], args["top_p"], args["max_completion_length"]) == (1.0, 0, 1.0, 8)


def test_ppo_rollout_is_one_collection_split_into_minibatches(cmp: ModuleType) -> None:
    args = cmp.map_grpo(_rl("gae", k=1, ppb=64), "gae")["args"]
    assert args["per_device_train_batch_size"] == 64 and args["num_mini_batches"] == 4
    assert args["gradient_accumulation_steps"] == 1 and args["num_ppo_epochs"] == 4
    assert args["total_episodes"] == 2048 and args["kl_estimator"] == "k1" and args["gamma"] == 1.0
    assert "max_steps" not in args and "disable_dropout" not in args  # not PPOConfig fields


@pytest.mark.parametrize(("advantage", "kw"), [
    ("grpo", {"kl_target": 1.0}), ("grpo", {"ptx_coef": 0.5}), ("grpo", {"ent_coef": "x", "kl_horizon": 1, "extra": 0}),
    ("gae", {"whiten_reward": True}), ("gae", {"ent_coef": 0.01}), ("gae", {"new_key": 1}),
])
def test_rl_settings_trl_cannot_express_are_refused(cmp: ModuleType, advantage: str, kw: dict[str, Any]) -> None:
    recipe = _rl(advantage, k=4 if advantage == "grpo" else 1, ppb=16 if advantage == "grpo" else 64, **kw)
    with pytest.raises(cmp.Unmappable):
        cmp.map_grpo(recipe, advantage)
    with pytest.raises(cmp.Unmappable, match="advantage"):  # a GRPO recipe is not compared as PPO
        cmp.map_grpo(_rl("grpo", k=1), "gae")


def test_ppo_refuses_groups(cmp: ModuleType) -> None:
    with pytest.raises(cmp.Unmappable, match="one response per prompt"):
        cmp.map_grpo(_rl("gae", k=4), "gae")


def test_preference_pairs_put_the_annotators_choice_first() -> None:
    trl = _module("lm_trl")
    rows = [{"prompt": "12>", "responses": ["21", "11", "2"], "utility": [0.9, 0.1, 0.5], "score": [1, 0.5, 0.5]}]
    pairs = trl.preference_pairs(rows, "all")
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [("21", "11"), ("21", "2"), ("2", "11")]
    assert all(p["prompt"] == "12>" for p in pairs)
    assert [(p["chosen"], p["rejected"]) for p in trl.preference_pairs(rows, "first_two")] == [("21", "11")]
