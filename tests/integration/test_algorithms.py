"""The contract every registered algorithm meets, one parametrised case per algorithm:

* it trains through the launcher on a tiny budget;
* a run of N frames and the same run resumed from its checkpoint at N/2 end with *everything* in the checkpoint
  equal: parameters, optimiser and scheduler states, the DataModule's state (counters, RNG states, env state,
  normalisation statistics, episode statistics) and any per-rank sidecar (replay buffers);
* it runs under ``trainer.precision=bf16-mixed``;
* under 2-process CPU DDP the parameters of both ranks are identical at the end.

An algorithm joins by adding one entry to ``CASES``; ``test_every_algorithm_has_a_case`` keeps the list complete.

Cases with ``data.complete_episodes=true`` collect whole episodes, so rollouts end at variable frame counts: their
half-way checkpoint is the first one at or past HALF, a run ends at the first rollout boundary at or past its
budget, and under DDP the global frame count must be the sum of what the ranks collected.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from lrl.launch import RunResult, resume, train
from lrl.recipe import load
from lrl.recipe.registry import ALGORITHMS
from tests.conftest import run_lrl

OFF = ["eval.every=0", "eval.final=false"]
# name -> (recipe, overrides giving a tiny run whose half-way point is a checkpoint boundary). budget.frames is
# set per test; each case must reach at least two rollouts / collection steps in budget.frames=HALF.
# a replay buffer smaller than the run (its write cursor wraps before the resume point), updates from frame 256
REPLAY = ["env.num_envs=2", "data.buffer_size=1500", "data.learning_starts=256", "data.batch_size=32",
          "data.updates_per_step=4"]
# deterministic actor-critics: small networks, 64 frames per collection step (1024 is a step boundary)
DETERMINISTIC = [*REPLAY, "data.frames_per_step=64", "algo.hidden=[32,32]"]
CASES: dict[str, tuple[str, list[str]]] = {
    "ddpg-pendulum": ("ddpg/pendulum", DETERMINISTIC),
    "ddpg-ou-pendulum": ("ddpg/pendulum", [*DETERMINISTIC, "algo.exploration=ou", "algo.actor_tau=0.01"]),
    "dqn-cartpole": ("dqn/cartpole", [*REPLAY, "algo.target_update_every=6"]),
    "dqn-double-q-polyak": ("dqn/cartpole", [*REPLAY, "algo.target=double_q", "algo.target_update=polyak"]),
    "a2c-cartpole": ("a2c/cartpole", ["data.frames_per_batch=128"]),
    "a2c-inverted-pendulum": ("a2c/inverted-pendulum", ["env.num_envs=2", "algo.optimizer=adam", "algo.shared=true",
                                                        "algo.critic_lr=1e-3", "algo.normalize_advantage=true"]),
    "ppo-cartpole": ("ppo/cartpole", []),
    "sarsa-cartpole": ("sarsa/cartpole", ["algo.epochs=2", "algo.target_update_every=6"]),
    "sarsa-expected-polyak": ("sarsa/cartpole", ["algo.expected=true", "algo.target_update=polyak",
                                                 "algo.minibatch_size=null", "algo.loss=mse"]),
    "ppo-pendulum": ("ppo/pendulum", ["env.num_envs=2", "data.frames_per_batch=256", "algo.epochs=2",
                                      "env.normalize_reward=true", "algo.lr_schedule=linear"]),
    "reinforce-cartpole": ("reinforce/cartpole", ["env.num_envs=2", "data.frames_per_batch=256", "algo.epochs=3"]),
    "reinforce-inverted-pendulum": ("reinforce/inverted-pendulum", [
        "env.num_envs=2", "data.frames_per_batch=256", "algo.epochs=2", "algo.baseline=optimal",
        "algo.normalize_advantage=false"]),
    "offpg-cartpole": ("offpg/cartpole", ["env.num_envs=2", "data.frames_per_batch=256", "algo.epochs=3",
                                          "algo.policy_epochs=null", "algo.sync_every=2"]),
    "offpg-inverted-pendulum": ("offpg/inverted-pendulum", [
        "env.num_envs=2", "data.frames_per_batch=256", "algo.epochs=3", "algo.policy_epochs=2",
        "algo.importance=per_decision", "algo.max_weight=2.0", "env.normalize_obs=true", "env.normalize_reward=true"]),
    "trpo-cartpole": ("trpo/cartpole", ["data.frames_per_batch=256", "algo.critic_minibatch_size=128"]),
    "npg-inverted-pendulum": ("npg/inverted-pendulum", ["data.frames_per_batch=256", "algo.fvp_fraction=0.5",
                                                        "env.normalize_obs=true"]),
    "ppo-kl-cartpole": ("ppo-kl/cartpole", []),
    "ppo-kl-pendulum": ("ppo-kl/pendulum", ["env.num_envs=2", "data.frames_per_batch=256", "algo.epochs=2",
                                            "algo.lr_schedule=linear"]),
    # a delay of 3 with 4 updates per collection step: delayed updates straddle the checkpoint
    "td3-pendulum": ("td3/pendulum", [*DETERMINISTIC, "algo.policy_delay=3"]),
    "sac-pendulum": ("sac/pendulum", [*REPLAY, "data.frames_per_step=8", "algo.hidden=[32,32]"]),
    "sac-pendulum-fixed-alpha": ("sac/pendulum", [*REPLAY, "data.frames_per_step=16", "algo.hidden=[32]",
                                                  "algo.autotune_alpha=false", "algo.alpha=0.2",
                                                  "algo.target_update_every=2", "env.normalize_obs=true"]),
}
HALF = 1024


# Algorithms that learn from a dataset on a steps clock, or from prompts with model directories built by earlier
# stages: their resume, bf16 and DDP cases are in their own file.
ELSEWHERE = {"bc": "tests/integration/test_bc.py", "lm-sft": "tests/integration/test_lm_stages.py",
             "lm-reward": "tests/integration/test_lm_stages.py", "rlhf-ppo": "tests/integration/test_rlhf_ppo.py"}


def test_every_algorithm_has_a_case() -> None:
    covered = {load(recipe, extra).algo["name"] for recipe, extra in CASES.values()} | set(ELSEWHERE)
    assert covered == set(ALGORITHMS), f"algorithms without a contract case: {set(ALGORITHMS) - covered}"


def _variable(recipe: str, extra: list[str]) -> bool:
    """Whole-episode rollouts: frame counts at rollout boundaries are not multiples of a fixed rollout size."""
    return bool(load(recipe, extra).data.get("complete_episodes", False))


def _train(recipe: str, overrides: list[str], run_dir: str) -> RunResult:
    out = train(recipe, overrides, run_dir=run_dir)
    assert isinstance(out, RunResult)
    return out


def assert_same(a: Any, b: Any, path: str = "") -> None:
    """Recursive exact equality of checkpoint contents (tensors, arrays, containers, scalars)."""
    if isinstance(a, dict):
        assert set(a) == set(b), f"{path}: keys {set(a) ^ set(b)}"
        for k in a:
            if k == "env" and isinstance(a[k], bytes):  # pickled env: memo layout may differ, state may not
                continue
            assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{path}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, path
        assert torch.equal(a, b), f"{path}: max diff {(a.double() - b.double()).abs().max()}"
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=path)
    elif hasattr(a, "state_dict") and callable(a.state_dict):
        assert_same(a.state_dict(), b.state_dict(), path)
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def _load(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=False)


def _resumable_parts(ckpt: dict[str, Any]) -> dict[str, Any]:
    """What must be equal after an exact resume (Lightning's own loop bookkeeping may differ)."""
    skip = {"loops", "callbacks", "pytorch-lightning_version", "hparams_name", "hyper_parameters", "epoch"}
    out = {k: v for k, v in ckpt.items() if k not in skip}
    out["lrl"] = {k: v for k, v in ckpt["lrl"].items() if k in ("clock", "clock_unit", "recipe")}
    return out


def _sidecars(ckpt: Path) -> dict[str, Any]:
    """The per-rank sidecar files a checkpoint refers to (replay buffers), keyed by rank suffix."""
    state = _load(ckpt)
    stems = [v["buffer_stem"] for v in state.values() if isinstance(v, dict) and "buffer_stem" in v]
    out = {}
    for stem in stems:
        files = sorted(ckpt.parent.glob(f"{stem}.rank*.pt"))
        assert files, f"{ckpt} refers to {stem} but no sidecar is there"
        for p in files:
            out[p.name.removeprefix(stem)] = torch.load(p, map_location="cpu", weights_only=False)
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_resume_from_half_way_equals_straight_run(case: str) -> None:
    recipe, extra = CASES[case]
    overrides = [*extra, *OFF, f"budget.frames={2 * HALF}", f"checkpoint.every={HALF}"]
    straight_out = _train(recipe, overrides, "runs/straight")
    mid = Path("runs/straight/checkpoints") / f"frames-{HALF:010d}.ckpt"
    if _variable(recipe, extra):  # the first periodic checkpoint, at the first rollout boundary past HALF
        mid = sorted(mid.parent.glob("frames-*.ckpt"))[0]
        assert HALF <= int(mid.stem.split("-")[1]) < 2 * HALF
        assert straight_out.clock >= 2 * HALF
    assert mid.is_file(), sorted(p.name for p in mid.parent.iterdir())
    half = Path("runs/resumed/checkpoints")
    half.mkdir(parents=True)
    shutil.copy("runs/straight/recipe.yaml", "runs/resumed/recipe.yaml")
    shutil.copy(mid, half)
    for p in mid.parent.glob("buffer-*"):  # replay-buffer sidecars
        shutil.copy(p, half)
    out = resume(half / mid.name)
    assert out.clock == (straight_out.clock if _variable(recipe, extra) else 2 * HALF)
    straight, resumed = Path("runs/straight/checkpoints/last.ckpt"), half / "last.ckpt"
    assert_same(_resumable_parts(_load(straight)), _resumable_parts(_load(resumed)))
    assert_same(_sidecars(straight), _sidecars(resumed))


@pytest.mark.parametrize("case", sorted(CASES))
def test_bf16_mixed_runs(case: str) -> None:
    recipe, extra = CASES[case]
    out = _train(recipe, [*extra, *OFF, f"budget.frames={HALF}", "trainer.precision=bf16-mixed"], "runs/bf16")
    assert out.clock >= HALF if _variable(recipe, extra) else out.clock == HALF
    params = _load(Path("runs/bf16/checkpoints/last.ckpt"))["state_dict"]
    assert all(torch.isfinite(v).all() for v in params.values() if v.is_floating_point())


# A 2-process run costs ~20 s of process start-up, so the default test run runs DDP once per algorithm (the
# case that exercises the most per-rank state); the other variants run with `-m slow`.
DDP_DEFAULT = {"a2c-cartpole", "ddpg-ou-pendulum", "dqn-cartpole", "npg-inverted-pendulum", "offpg-cartpole",
               "ppo-cartpole", "ppo-kl-cartpole", "reinforce-cartpole", "sac-pendulum", "sarsa-cartpole",
               "td3-pendulum", "trpo-cartpole"}


def test_ddp_default_covers_every_algorithm() -> None:
    assert set(CASES) >= DDP_DEFAULT
    assert {CASES[c][0].split("/")[0] for c in DDP_DEFAULT} == {r.split("/")[0] for r, _ in CASES.values()}


@pytest.mark.parametrize("case", [c if c in DDP_DEFAULT else pytest.param(c, marks=pytest.mark.slow)
                                  for c in sorted(CASES)])
def test_ddp_two_cpu_processes_keep_identical_parameters(case: str, tmp_path: Path) -> None:
    recipe, extra = CASES[case]
    run = tmp_path / "ddp"
    proc = run_lrl("train", recipe, *extra, *OFF, f"budget.frames={2 * HALF}", "trainer.accelerator=cpu",
                   "trainer.devices=2", "trainer.strategy=ddp", "--run-dir", str(run), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    digests = json.loads((run / "ddp_params.json").read_text())["sha256_per_rank"]
    assert len(digests) == 2 and digests[0] == digests[1]
    ckpt = _load(run / "checkpoints" / "last.ckpt")
    if not _variable(recipe, extra):
        assert ckpt["lrl"]["clock"] == 2 * HALF  # global frames
        return
    ranks = next(v for k, v in ckpt.items() if k.endswith("DataModule"))["ranks"]
    per_rank = [r["collector"]["frames"] for r in ranks]
    assert ckpt["lrl"]["clock"] == sum(per_rank) >= 2 * HALF  # global frames: the sum of what each rank took
