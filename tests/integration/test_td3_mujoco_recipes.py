"""The MuJoCo TD3 recipes are meant for a GPU machine (1M frames); here they must validate and run a few hundred
frames through the launcher with their own networks and settings (only the warm-up and batch are shrunk)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lrl.launch import RunResult, train
from lrl.recipe import load


@pytest.mark.parametrize("name", ["td3/halfcheetah", "td3/hopper"])
def test_mujoco_td3_recipe_runs_a_few_hundred_frames(name: str) -> None:
    recipe = load(name)
    assert recipe.budget.frames == 1_000_000 and recipe.env.id.endswith("-v5")
    out = train(name, ["budget.frames=300", "data.learning_starts=200", "data.batch_size=32",
                       "trainer.accelerator=cpu", "eval.every=0", "eval.final=false",
                       "checkpoint.every=0"], run_dir="runs/mujoco")
    assert isinstance(out, RunResult) and out.clock == 300
    state = torch.load(Path("runs/mujoco/checkpoints/last.ckpt"), map_location="cpu", weights_only=False)
    assert state["td3"]["updates"] == 101  # one update per frame, from the 200th (last warm-up) frame on
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point())
