"""Shaping and curricula through the real command line: a short DQN run of each, resumed from its half-way checkpoint
to exactly the straight run's state (weights, replay buffer, envs, the curriculum's stage and window), with the
shaped return and the stage in MLflow beside the env's own return."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from lrl.launch import RunResult, train
from tests.conftest import run_lrl
from tests.integration.test_algorithms import _resumable_parts, _sidecars, assert_same

HALF = 800
SMALL = ["data.learning_starts=400", "data.updates_per_step=2", "eval.every=0", "eval.final=false",
         f"budget.frames={2 * HALF}", f"checkpoint.every={HALF}"]
CASES = {
    "shaped": ("dqn/mountaincar-shaped", []),
    # advance after every 2 episodes (any return passes): stages 1, 2, 3 at about 400, 800, 1200 frames, so the
    # half-way checkpoint falls between two advances
    "curriculum": ("dqn/mountaincar-curriculum", ["env.curriculum.window=2", "env.curriculum.threshold=-1000"]),
}


def _metrics(tracking_uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    client = mlflow.tracking.MlflowClient(tracking_uri)
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


@pytest.mark.parametrize("case", sorted(CASES))
def test_cli_run_resumes_exactly(case: str, tmp_path: Path, tracking_uri: str) -> None:
    recipe, extra = CASES[case]
    straight = tmp_path / "straight"
    proc = run_lrl("train", recipe, *extra, *SMALL, "--run-dir", str(straight), "--tracking-uri", tracking_uri)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = torch.load(straight / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    run_id = a["lrl"]["mlflow_run_id"]
    returns = _metrics(tracking_uri, run_id, "train/episode_return")
    lengths = dict(_metrics(tracking_uri, run_id, "train/episode_length"))
    assert returns and all(r == -lengths[step] for step, r in returns)  # MountainCar's own return: −1 per step
    ranks = next(v["ranks"] for v in a.values() if isinstance(v, dict) and "ranks" in v)  # the datamodule's state
    extras = ranks[0]["extras"]
    if case == "shaped":
        shaped = _metrics(tracking_uri, run_id, "train/shaped_return")
        assert shaped and all(s != -200.0 for _, s in shaped)  # the potential's terms are in it
    else:
        stages = [v for _, v in _metrics(tracking_uri, run_id, "curriculum/stage")]
        assert stages[0] == 0.0 and stages[-1] == 3.0
        assert all(b - a in (0.0, 1.0) for a, b in itertools.pairwise(stages))  # one stage at a time
        assert extras["curriculum"]["stage"] == 3 and len(extras["curriculum"]["advanced_at"]) == 3

    # the resumed run (it logs into the same MLflow run, so its metrics were read first)
    mid = straight / "checkpoints" / f"frames-{HALF:010d}.ckpt"
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copy(straight / "recipe.yaml", resumed / "recipe.yaml")
    shutil.copy(mid, resumed / "checkpoints")
    for p in mid.parent.glob(f"buffer-{HALF:010d}.*"):
        shutil.copy(p, resumed / "checkpoints")
    proc = run_lrl("resume", str(resumed / "checkpoints" / mid.name), "--tracking-uri", tracking_uri)
    assert proc.returncode == 0, proc.stderr[-3000:]
    b = torch.load(resumed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert_same(_resumable_parts(a), _resumable_parts(b))
    assert_same(_sidecars(straight / "checkpoints" / "last.ckpt"), _sidecars(resumed / "checkpoints" / "last.ckpt"))


@pytest.mark.slow
def test_ddp_ranks_advance_together(tmp_path: Path) -> None:
    """Two CPU processes, one env each: every rank decides on both ranks' episodes, so the stages, windows and
    advance frames in the checkpoint are the same on both."""
    run = tmp_path / "ddp"
    proc = run_lrl("train", "dqn/mountaincar-curriculum", *CASES["curriculum"][1], *SMALL, "env.num_envs=2",
                   "data.frames_per_step=32", "trainer.devices=2", "trainer.strategy=ddp", "--run-dir", str(run),
                   timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    ranks = next(v["ranks"] for v in ckpt.values() if isinstance(v, dict) and "ranks" in v)
    first, second = (r["extras"]["curriculum"] for r in ranks)
    assert first == second and first["stage"] == 3


def cartpole_upright(obs: np.ndarray) -> np.ndarray:
    """A potential for the on-policy test: the pole's angle, negated (0 upright)."""
    return -np.abs(np.asarray(obs)[..., 2])


def test_on_policy_source_with_shaping_normalised_rewards_and_a_curriculum(tracking_uri: str) -> None:
    """PPO (the on-policy source) with both sections and env.normalize_reward, in-process: the curriculum walks
    through its stages at rollout boundaries and the env's own return is what train/episode_return reports."""
    out = train("ppo/cartpole", [
        "budget.frames=4096", "eval.every=0", "eval.final=false", "env.normalize_reward=true",
        f"env.shaping.potential={__name__}:cartpole_upright", "env.shaping.scale=10",
        "env.curriculum={stages: [{attrs: {force_mag: 5.0}}, {attrs: {length: 0.25}}, {}], window: 8, "
        "threshold: 0}", "tracking.log_every=256"], run_dir="runs/ppo", tracking_uri=tracking_uri)
    assert isinstance(out, RunResult) and out.clock == 4096
    ckpt = torch.load("runs/ppo/checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    extras = next(v["ranks"] for v in ckpt.values() if isinstance(v, dict) and "ranks" in v)[0]["extras"]
    assert extras["curriculum"]["stage"] == 2
    returns = _metrics(tracking_uri, out.mlflow_run_id or "", "train/episode_return")
    lengths = dict(_metrics(tracking_uri, out.mlflow_run_id or "", "train/episode_length"))
    assert returns and all(r == pytest.approx(lengths[step]) for step, r in returns)  # CartPole: +1 per step
