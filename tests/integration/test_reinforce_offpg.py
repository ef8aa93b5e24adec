"""reinforce and offpg refuse data they cannot use, in one clear line, before anything is left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from lrl.errors import RecipeError
from lrl.launch import train


@pytest.mark.parametrize(
    ("recipe", "overrides", "message"),
    [
        ("reinforce/cartpole", ["data.complete_episodes=false"], "set data.complete_episodes=true"),
        ("offpg/cartpole", ["data.minibatch_size=64"], "write it as algo.minibatch_size"),
        ("offpg/cartpole", ["algo.minibatch_size=64"], "algo.minibatch_size: unknown key"),
        ("reinforce/cartpole", ["algo.policy_epochs=100"], "exceeds algo.epochs=80"),
        ("offpg/cartpole", ["data.collector=torchrl"], "needs data.collector=lean"),
    ],
)
def test_unusable_data_is_one_clear_error(recipe: str, overrides: list[str], message: str) -> None:
    with pytest.raises(RecipeError) as err:
        train(recipe, [*overrides, "budget.frames=512", "eval.final=false"], run_dir="runs/bad")
    assert message in err.value.message and "\n" not in err.value.message
    assert not Path("runs/bad").exists()


def test_complete_episode_minibatches_under_ddp(tmp_path: Path) -> None:
    """With whole-episode rollouts the ranks collect different numbers of frames; with minibatches they must still
    take the same number of optimiser steps (else DDP would hang or the ranks would drift apart)."""
    import json

    import torch

    from tests.conftest import run_lrl

    run = tmp_path / "ddp"
    proc = run_lrl("train", "ppo/cartpole", "data.complete_episodes=true", "algo.minibatch_size=64",
                   "algo.epochs=2", "env.num_envs=2", "data.frames_per_batch=256", "budget.frames=1024",
                   "eval.final=false", "eval.every=0", "trainer.devices=2", "trainer.strategy=ddp",
                   "--run-dir", str(run), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    digests = json.loads((run / "ddp_params.json").read_text())["sha256_per_rank"]
    assert len(digests) == 2 and digests[0] == digests[1]
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    ranks = ckpt["OnPolicyDataModule"]["ranks"]
    per_rank = [r["collector"]["frames"] for r in ranks]
    assert per_rank[0] != per_rank[1] and ckpt["lrl"]["clock"] == sum(per_rank) >= 1024
