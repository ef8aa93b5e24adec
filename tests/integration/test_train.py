"""Training through the launcher in-process: run layout, evaluation, exported policy, exact resume,
normalisation statistics across resume, MLflow steps, bf16."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import lrl
from lrl.cli import app
from lrl.launch import RunResult, evaluate_run, resume, train

QUICK = ["budget.frames=4096", "checkpoint.every=2048", "eval.every=2048", "eval.episodes=3"]
PENDULUM = ["env.num_envs=2", "data.frames_per_batch=256", "algo.epochs=2", "env.normalize_reward=true",
            "algo.lr_schedule=linear"]


def _train(recipe: str, overrides: list[str], run_dir: str) -> RunResult:
    out = train(recipe, overrides, run_dir=run_dir)
    assert isinstance(out, RunResult)
    return out


def _ckpt(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=False)


def test_run_layout_eval_and_policy() -> None:
    out = _train("ppo/cartpole", QUICK, "runs/a")
    run = Path("runs/a")
    assert out.clock == 4096 and (run / "recipe.yaml").is_file()
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["frames-0000002048.ckpt", "frames-0000004096.ckpt", "last.ckpt"]
    result = evaluate_run(run, episodes=4, seed=3)
    assert result["episodes"] == 4 and len(result["returns"]) == 4 and result["clock"] == 4096
    assert evaluate_run(run, episodes=4, seed=3)["returns"] == result["returns"]  # deterministic
    sampled = [evaluate_run(run, episodes=4, seed=3, deterministic=False)["returns"] for _ in range(2)]
    assert sampled[0] == sampled[1]  # lrl eval --stochastic: the seed fixes the draws too
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    evaluate_run(run, episodes=1, seed=3, deterministic=False)
    assert torch.equal(torch.rand(1), before)  # and the caller's torch RNG is left where it was
    policy = lrl.load_policy(run)
    actions = policy(np.zeros((5, 4), np.float32))
    assert actions.shape == (5,) and actions.dtype.kind == "i"
    cli = CliRunner().invoke(app, ["eval", str(run), "--episodes", "2", "--json"])
    assert cli.exit_code == 0 and '"return_mean"' in cli.output


def test_resume_extends_budget_in_same_mlflow_run_with_monotonic_steps() -> None:
    first = _train("ppo/cartpole", ["budget.frames=2048", "eval.every=1024", "eval.episodes=2",
                                    "tracking.log_every=512"], "runs/m")
    second = resume("runs/m", ["budget.frames=4096"])
    assert second.mlflow_run_id == first.mlflow_run_id and second.clock == 4096
    client = mlflow.MlflowClient()
    for key in ("eval/return_mean", "train/episode_return", "loss/policy"):
        steps = [m.step for m in client.get_metric_history(first.mlflow_run_id, key)]
        assert steps == sorted(steps) and len(set(steps)) == len(steps) and steps[-1] == 4096, (key, steps)


def test_changed_algorithm_or_env_is_refused_on_resume() -> None:
    _train("ppo/cartpole", ["budget.frames=512", "eval.every=0"], "runs/r")
    for bad in ("env.id=Acrobot-v1", "algo.lr=0.1", "algo.epochs=3"):
        with pytest.raises(lrl.errors.RecipeError, match="keeps its algorithm, environment and data"):
            resume("runs/r", [bad])


def test_bf16_mixed_learns_cartpole() -> None:
    # the recipe's own claim at its own budget (100k frames, ≥ 475): bf16 must learn as fp32 does. (At 30k frames, an
    # earlier budget of this test, fp32 and bf16 each reached 475 on 4 of seeds 0-4 with one thread, and each had
    # one seed near 175, bf16's being seed 0: too short a budget for a one-seed check.)
    out = _train("ppo/cartpole", ["trainer.precision=bf16-mixed", "eval.every=0", "eval.episodes=10",
                                  "checkpoint.every=0"], "runs/bf16")
    assert out.eval is not None and out.clock >= 100_000
    assert out.eval["return_mean"] >= 475, out.eval


def test_stock_torchrl_collector_is_selectable_from_the_recipe() -> None:
    out = _train("ppo/cartpole", ["data.collector=torchrl", "budget.frames=1024", "eval.every=0",
                                  "eval.episodes=2"], "runs/stock")
    assert out.clock == 1024 and out.eval is not None
    with pytest.raises(lrl.errors.RecipeError, match=r"data\.collector=torchrl does not support"):
        _train("ppo/pendulum", ["data.collector=torchrl", "budget.frames=512"], "runs/stock-norm")
    assert not Path("runs/stock-norm").exists()
