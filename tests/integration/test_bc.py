"""Behavioural cloning through the launcher, from an lrl dataset file of a scripted CartPole expert
(tests/bc_helpers.py): training through the command line with evaluation in the env, exact resume, 2-process DDP,
bf16-mixed, and ``algo.init_from``: PPO's policy at step 0 is BC's, and every mismatch is one line, exit 2, before any
run directory exists.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import pytest
import torch

from lrl.algos.ppo.module import PPO
from lrl.errors import RecipeError
from lrl.evaluate import policy_from_checkpoint
from lrl.launch import RunResult, resume, train
from tests.bc_helpers import bc_recipe, cartpole_dataset, pendulum_dataset
from tests.conftest import run_lrl
from tests.integration.test_algorithms import _load, _resumable_parts, assert_same


@pytest.fixture
def demos(tmp_path: Path) -> Path:
    """Two full episodes (1000 transitions) of the scripted controller."""
    return cartpole_dataset(tmp_path / "demos.pt", episodes=2)


def _train(recipe: Path | str, overrides: list[str], run_dir: str) -> RunResult:
    out = train(str(recipe), overrides, run_dir=run_dir)
    assert isinstance(out, RunResult)
    return out


def test_bc_learns_the_scripted_expert_through_the_cli(tmp_path: Path, demos: Path) -> None:
    recipe = bc_recipe(tmp_path, demos, budget={"steps": 300}, eval={"every": 0, "episodes": 5})
    proc = run_lrl("train", str(recipe), "--run-dir", "runs/cli", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "done: 300 steps" in proc.stderr and "eval return" in proc.stderr
    ckpt = _load(Path("runs/cli/checkpoints/last.ckpt"))
    assert ckpt["lrl"]["clock"] == 300 and ckpt["lrl"]["clock_unit"] == "steps"
    # the cloned policy agrees with the expert on held-out expert states and balances the pole
    held_out = torch.load(cartpole_dataset(tmp_path / "held-out.pt", episodes=1, seed=100), weights_only=True)["data"]
    policy = policy_from_checkpoint(ckpt)
    agreement = (policy(held_out["observation"].numpy()) == held_out["action"].numpy()).mean()
    assert agreement > 0.9, agreement
    run = mlflow.MlflowClient().get_run(ckpt["lrl"]["mlflow_run_id"])
    assert run.data.metrics["eval/return_mean"] >= 400, run.data.metrics
    assert {"loss/bc", "loss/l2", "loss/total", "train/accuracy", "stats/entropy"} <= set(run.data.metrics)
    assert run.data.params["algo.name"] == "bc"


def test_bc_resumes_exactly(tmp_path: Path, demos: Path) -> None:
    recipe = bc_recipe(tmp_path, demos, algo={"name": "bc", "hidden": [16], "l2_coef": 1e-3, "ent_coef": 0.01,
                                              "lr_schedule": "linear"})
    straight = _train(recipe, [], "runs/straight")
    assert straight.clock == 40
    ckdir = Path("runs/straight/checkpoints")
    half = Path("runs/resumed/checkpoints")
    half.mkdir(parents=True)
    shutil.copy("runs/straight/recipe.yaml", "runs/resumed/recipe.yaml")
    shutil.copy(ckdir / "steps-0000000020.ckpt", half)
    assert resume(half / "steps-0000000020.ckpt").clock == 40
    assert_same(_resumable_parts(_load(ckdir / "last.ckpt")), _resumable_parts(_load(half / "last.ckpt")))


def test_bc_ddp_two_cpu_processes_keep_identical_parameters(tmp_path: Path, demos: Path) -> None:
    recipe = bc_recipe(tmp_path, demos, trainer={"accelerator": "cpu", "devices": 2, "strategy": "ddp"})
    proc = run_lrl("train", str(recipe), "--run-dir", str(tmp_path / "ddp"), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    digests = json.loads((tmp_path / "ddp" / "ddp_params.json").read_text())["sha256_per_rank"]
    assert len(digests) == 2 and digests[0] == digests[1]
    assert _load(tmp_path / "ddp" / "checkpoints" / "last.ckpt")["lrl"]["clock"] == 40


@pytest.mark.parametrize("kind", ["categorical", "gaussian-nll", "gaussian-mse"])
def test_bc_runs_under_bf16_mixed(tmp_path: Path, demos: Path, kind: str) -> None:
    if kind == "categorical":
        recipe = bc_recipe(tmp_path, demos)
    else:
        data = pendulum_dataset(tmp_path / "pendulum.pt")
        loss = {"gaussian-nll": "gaussian_nll", "gaussian-mse": "mse"}[kind]
        recipe = bc_recipe(tmp_path, data, env={"id": "Pendulum-v1"}, algo={"name": "bc", "hidden": [16], "loss": loss})
    out = _train(recipe, ["trainer.precision=bf16-mixed", "checkpoint.every=0"], "runs/bf16")
    assert out.clock == 40
    params = _load(Path("runs/bf16/checkpoints/last.ckpt"))["state_dict"]
    assert all(torch.isfinite(v).all() for v in params.values() if v.is_floating_point())


# --- init_from ---------------------------------------------------------------------------------------------------
PPO_TINY = ["algo.hidden=[32,32]", "data.frames_per_batch=256", "env.num_envs=2", "budget.frames=256",
            "eval.every=0", "eval.final=false", "checkpoint.every=0"]


def test_ppo_starts_from_the_bc_policy(tmp_path: Path, demos: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _train(bc_recipe(tmp_path, demos), [], "runs/bc")
    bc = policy_from_checkpoint(_load(Path("runs/bc/checkpoints/last.ckpt"))).module.policy_network()
    at_start: list[dict[str, torch.Tensor]] = []

    def capture(self: PPO) -> None:
        at_start.append(self.net.policy_state())

    monkeypatch.setattr(PPO, "on_train_start", capture, raising=False)
    out = _train("ppo/cartpole", [*PPO_TINY, "algo.init_from=runs/bc"], "runs/ppo")
    (state,) = at_start
    assert_same(state, bc.policy_state())  # body and head, exactly, before PPO's first update
    params = mlflow.MlflowClient().get_run(out.mlflow_run_id).data.params
    assert params["algo.init_from"] == "runs/bc"
    ppo = _load(Path("runs/ppo/checkpoints/last.ckpt"))
    assert ppo["lrl"]["recipe"]["algo"]["init_from"] == "runs/bc"
    assert policy_from_checkpoint(ppo) is not None  # the recipe with init_from loads for evaluation too


@pytest.mark.parametrize(("overrides", "message"), [
    (["algo.hidden=[64,64]"], r"its policy \(Linear\(4, 32\) Tanh .*\) differs from this recipe's \(Linear\(4, 64\)"),
    (["algo.activation=relu"], r"differs from this recipe's .*ReLU"),
    (["env.id=Acrobot-v1"], r"that run learned on CartPole-v1 \(obs_shape=\(4,\), action_dim=2\)"),
    (["env.normalize_obs=true"], r"that run's policy saw raw observations but this recipe normalises them"),
    (["algo.init_from=runs/nowhere"], r"algo\.init_from=runs/nowhere: checkpoint 'runs/nowhere' not found"),
], ids=["hidden", "activation", "another-env", "normalize-obs", "missing"])
def test_init_from_mismatches_are_refused_before_anything_is_written(tmp_path: Path, demos: Path,
                                                                     overrides: list[str], message: str) -> None:
    _train(bc_recipe(tmp_path, demos), [], "runs/bc")
    with pytest.raises(RecipeError, match=message) as err:
        train("ppo/cartpole", [*PPO_TINY, "algo.init_from=runs/bc", *overrides], run_dir="runs/bad")
    assert "\n" not in err.value.message and err.value.exit_code == 2
    assert not Path("runs/bad").exists()


def test_init_from_refusals_on_the_command_line(tmp_path: Path, demos: Path) -> None:
    _train(bc_recipe(tmp_path, demos), [], "runs/bc")
    cases: list[tuple[list[str], str]] = [
        (["ppo/cartpole", *PPO_TINY, "algo.init_from=runs/bc", "algo.hidden=[64,64]"], "differs from this recipe's"),
        (["dqn/cartpole", "algo.init_from=runs/bc"], "algo.init_from: algo.name=dqn has no stochastic MLP policy"),
    ]
    for args, message in cases:
        proc = run_lrl("train", *args, "--run-dir", "runs/bad", timeout=120)
        assert proc.returncode == 2, proc.stderr[-2000:]
        lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and message in lines[0], proc.stderr[-2000:]
        assert not Path("runs/bad").exists()
