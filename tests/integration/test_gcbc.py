"""Goal-conditioned BC with hindsight relabelling end to end through the command line (the shipped recipe, shrunk):
rounds of collection and training on PointMaze, eval/success_rate logged every round, ``lrl eval`` printing it, an
exact resume from a checkpoint taken in the middle of a round, and a non-goal env refused in one line."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import mlflow
import pytest
import torch

from tests.conftest import run_lrl
from tests.integration.test_algorithms import _load, _resumable_parts, assert_same

pytest.importorskip("gymnasium_robotics")
ROOT = Path(__file__).resolve().parents[2]
ENV = {"PYTHONPATH": str(ROOT)}
TINY = ["algo.hidden=[32]", "env.num_envs=2", "env.max_episode_steps=40", "data.episodes_per_round=3",
        "data.steps_per_round=10", "data.batch_size=32", "data.max_transitions=200", "budget.steps=40",
        "checkpoint.every=15", "eval.every=10", "eval.episodes=3", "tracking.log_every=10",
        "tracking.experiment=gcbc-test"]


def _state(ckpt: dict[str, Any]) -> dict[str, Any]:
    return ckpt["HindsightDataModule"]


def test_rounds_log_success_and_resume_exactly_from_the_middle_of_a_round(tmp_path: Path) -> None:
    proc = run_lrl("train", "gcbc/pointmaze", *TINY, "--run-dir", "runs/straight", env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "success rate" in proc.stderr
    ckdir = Path("runs/straight/checkpoints")
    final = _load(ckdir / "last.ckpt")
    state = _state(final)
    rank = state["ranks"][0]
    assert final["global_step"] == 40 and rank["steps"] == 40 and rank["round"] == 4  # rounds at 0, 10, 20, 30
    size = sum(len(c["action"]) for c in state["aggregate"])
    assert 32 <= size <= 200  # the FIFO cap
    goals = torch.cat([c["desired_goal"] for c in state["aggregate"]])
    reached = torch.cat([c["next/achieved_goal"] for c in state["aggregate"]])
    assert all((reached == g).all(-1).any() for g in goals)  # every goal is one the data reached

    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("gcbc-test")
    assert exp is not None
    (run,) = client.search_runs([exp.experiment_id])
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "eval/success_rate")]
    assert steps == [10, 20, 30, 40]  # once per round
    assert 0.0 <= run.data.metrics["eval/success_rate"] <= 1.0
    for key in ("hindsight/collect_success", "hindsight/dataset_size", "loss/bc"):
        assert key in run.data.metrics, key

    out = run_lrl("eval", "runs/straight", "--episodes", "2", env=ENV)
    assert out.returncode == 0 and "success rate" in out.stdout, out.stderr[-2000:]

    half = Path("runs/resumed/checkpoints")
    half.mkdir(parents=True)
    shutil.copy("runs/straight/recipe.yaml", "runs/resumed/recipe.yaml")
    shutil.copy(ckdir / "steps-0000000015.ckpt", half)
    assert _state(_load(half / "steps-0000000015.ckpt"))["ranks"][0]["steps_in_round"] == 5
    proc = run_lrl("resume", str(half / "steps-0000000015.ckpt"), env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same(_resumable_parts(final), _resumable_parts(_load(half / "last.ckpt")))


def test_an_env_without_goals_is_one_line_and_nothing_is_written() -> None:
    proc = run_lrl("train", "gcbc/pointmaze", *TINY, "env.id=Pendulum-v1", "env.kwargs={}", "--run-dir", "runs/bad",
                   env=ENV)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if "Adroit" not in ln]  # gymnasium-robotics' own notice
    assert len(lines) == 1 and "goal env" in lines[0], lines
    assert not Path("runs/bad").exists()
