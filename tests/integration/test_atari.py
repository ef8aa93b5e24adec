"""Atari through the command line: every algorithm with discrete actions trains on Pong frames with its CNN, exact
resume of dqn/pong (replay buffer included), ``lrl eval --video``, and 2-process DDP of ppo/pong."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from lrl.cli import app
from tests.conftest import run_lrl
from tests.integration.test_algorithms import _load, _resumable_parts, _sidecars, assert_same

pytest.importorskip("ale_py")
runner = CliRunner()

# short Pong episodes (env.max_episode_steps counts emulator frames: 200 = 50 agent steps), no evaluation
ATARI = ["env.id=ALE/Pong-v5", "env.atari={}", "env.max_episode_steps=200", "eval.every=0", "eval.final=false",
         "trainer.accelerator=cpu"]
SMALL = ["algo.hidden=[32]", "algo.activation=relu"]
ON = [*ATARI, *SMALL, "env.num_envs=2", "data.frames_per_batch=64"]
# one case per algorithm with discrete actions, each from its own shipped recipe with the Atari env
CASES: dict[str, tuple[str, list[str]]] = {
    "dqn": ("dqn/pong", [*ATARI, *SMALL, "data.learning_starts=64", "data.buffer_size=1000", "data.batch_size=16"]),
    "ppo": ("ppo/pong", [*ON, "algo.minibatch_size=32", "algo.epochs=1"]),
    "ppo-kl": ("ppo-kl/cartpole", [*ON, "algo.minibatch_size=32", "algo.epochs=1"]),
    "a2c": ("a2c/cartpole", ON),
    "sarsa": ("sarsa/cartpole", [*ON, "algo.epochs=1", "algo.minibatch_size=32"]),
    "trpo": ("trpo/cartpole", [*ON, "algo.critic_minibatch_size=32", "algo.critic_epochs=1", "algo.cg_iterations=3"]),
    "npg": ("npg/cartpole", [*ON, "algo.critic_minibatch_size=32", "algo.critic_epochs=1", "algo.cg_iterations=3"]),
    "reinforce": ("reinforce/cartpole", [*ON, "algo.epochs=1"]),
    "offpg": ("offpg/cartpole", [*ON, "algo.epochs=1", "algo.policy_epochs=null"]),
}


def test_every_discrete_action_algorithm_has_an_atari_case() -> None:
    from lrl.recipe import load
    from lrl.recipe.registry import ALGORITHMS, algorithm_class

    images = {n for n in ALGORITHMS if "image" in algorithm_class(n).consumes.observations}
    discrete = {n for n in ALGORITHMS if "discrete" in algorithm_class(n).consumes.actions} - {"bc"}
    assert images == discrete  # behavioural cloning learns from datasets: no Atari case
    assert {load(r, o).algo["name"] for r, o in CASES.values()} == images


@pytest.mark.parametrize("case", sorted(CASES))
def test_trains_a_few_hundred_frames_on_pong(case: str) -> None:
    recipe, overrides = CASES[case]
    out = runner.invoke(app, ["train", recipe, *overrides, "budget.frames=256", "checkpoint.every=256",
                              "--run-dir", "run"])
    assert out.exit_code == 0, out.stderr[-3000:]
    ckpt = _load(Path("run/checkpoints/last.ckpt"))
    assert ckpt["lrl"]["clock"] >= 256
    convs = [k for k, v in ckpt["state_dict"].items() if v.dim() == 4]  # the CNN's kernels are in the network
    assert convs, sorted(ckpt["state_dict"])


def test_dqn_pong_resume_is_exact_replay_buffer_included() -> None:
    args = [*CASES["dqn"][1], "env.num_envs=2", "data.frames_per_step=8", "data.buffer_size=200",
            "algo.target_update_every=3", "budget.frames=320", "checkpoint.every=160"]
    out = runner.invoke(app, ["train", "dqn/pong", *args, "--run-dir", "straight"])
    assert out.exit_code == 0, out.stderr[-3000:]
    mid = Path("straight/checkpoints/frames-0000000160.ckpt")
    half = Path("resumed/checkpoints")
    half.mkdir(parents=True)
    shutil.copy("straight/recipe.yaml", "resumed/recipe.yaml")
    shutil.copy(mid, half)
    for p in mid.parent.glob("buffer-0000000160*"):
        shutil.copy(p, half)
    out = runner.invoke(app, ["resume", str(half / mid.name)])
    assert out.exit_code == 0, out.stderr[-3000:]
    straight, resumed = _load(Path("straight/checkpoints/last.ckpt")), _load(half / "last.ckpt")
    assert straight["lrl"]["clock"] == resumed["lrl"]["clock"] == 320
    assert_same(_resumable_parts(straight), _resumable_parts(resumed))
    buffers = _sidecars(Path("straight/checkpoints/last.ckpt"))
    assert_same(buffers, _sidecars(half / "last.ckpt"))
    (buffer,) = buffers.values()
    assert buffer["len"] == 200 and buffer["write_count"] == 320  # the buffer wrapped before the resume point
    assert buffer["data"]["frame"].dtype == torch.uint8 and buffer["data"]["frame"].shape == (200, 84, 84)


def test_eval_video_of_an_atari_run() -> None:
    out = runner.invoke(app, ["train", "ppo/pong", *CASES["ppo"][1], "budget.frames=128", "checkpoint.every=128",
                              "--run-dir", "run"])
    assert out.exit_code == 0, out.stderr[-3000:]
    proc = run_lrl("eval", "run", "--episodes", "1", "--seed", "3", "--video", "vids")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (gif,) = Path("vids").glob("*.gif")
    with Image.open(gif) as im:
        assert im.size == (160, 210) and im.n_frames > 1  # the emulator's own screen, not the 84x84 input


def test_bad_atari_input_is_one_line() -> None:
    proc = run_lrl("train", "ppo/pong", "env.normalize_obs=true", "--run-dir", "run")
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines == ["error: env.normalize_obs: ALE/Pong-v5 has image observations, which networks scale to [0, 1] "
                     "themselves; set env.normalize_obs=false"], proc.stderr
    assert not Path("run").exists()


def test_ddp_two_cpu_processes_keep_identical_parameters_on_ppo_pong(tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    proc = run_lrl("train", "ppo/pong", *CASES["ppo"][1], "budget.frames=256", "trainer.devices=2",
                   "trainer.strategy=ddp", "--run-dir", str(run), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    digests = json.loads((run / "ddp_params.json").read_text())["sha256_per_rank"]
    assert len(digests) == 2 and digests[0] == digests[1]
    assert _load(run / "checkpoints" / "last.ckpt")["lrl"]["clock"] == 256
