"""``lrl demos`` and the ``demos`` source end to end: a scripted expert and a trained lrl run recorded into Minari
datasets, a recipe training on one (and on one as a ``data.streams`` entry), exact resume, and every bad input as one
line with exit 2 and nothing written.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from lrl.data.demos import read_minari, write_minari
from lrl.data.minari_io import minari_info, minari_store
from lrl.demos import record
from lrl.errors import RecipeError
from lrl.launch import resume, train
from lrl.spec import Spec
from tests.conftest import run_lrl
from tests.experts import cartpole_pd
from tests.integration.test_algorithms import _load, _resumable_parts, assert_same

ROOT = Path(__file__).resolve().parents[2]
ENV = {"PYTHONPATH": str(ROOT)}  # tests.experts and tests.contract_modules importable in the child process


def _one_line_exit_2(proc: Any, *needles: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def _store() -> list[str]:
    store = minari_store()
    return sorted(str(p.relative_to(store)) for p in store.rglob("*")) if store.exists() else []


def _returns(data: dict[str, torch.Tensor]) -> list[float]:
    episodes = data["episode"]
    return [float(data["next/reward"][episodes == e].sum()) for e in episodes.unique().tolist()]


def test_lrl_demos_records_a_scripted_expert() -> None:
    proc = run_lrl("demos", "tests.experts:cartpole_pd", "--episodes", "3", "--env", "CartPole-v1", "--out",
                   "cartpole/pd-v0", "--seed", "4", "--num-envs", "2", env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("recorded 3 episodes, 1,500 steps, return 500.0 ± 0.0 (uniform random "), proc.stdout
    data, spec = read_minari("cartpole/pd-v0")
    assert spec.id == "CartPole-v1" and _returns(data) == [500.0, 500.0, 500.0]
    assert torch.equal(data["action"], torch.from_numpy(cartpole_pd(data["observation"].numpy())))  # no noise
    info = minari_info("cartpole/pd-v0")
    assert info.metadata["ref_max_score"] == 500.0 and info.metadata["ref_min_score"] < 100  # random: ~20
    import minari

    ds = minari.load_dataset("cartpole/pd-v0")
    assert [m["seed"] for m in ds.storage.get_episode_metadata([0, 1, 2])] == [4, 5, 6]
    first = ds[0]
    import gymnasium as gym

    obs, _ = gym.make("CartPole-v1").reset(seed=4)  # episode i starts from seed + i
    assert np.array_equal(first.observations[0], obs)


def test_recording_is_the_same_for_any_number_of_envs_and_noise_is_seeded(tmp_path: Path) -> None:
    one = record("tests.experts:cartpole_pd", 3, "cp/one-v0", "CartPole-v1", noise=0.2, seed=1, num_envs=1)
    three = record("tests.experts:cartpole_pd", 3, "cp/three-v0", "CartPole-v1", noise=0.2, seed=1, num_envs=3,
                   store=tmp_path / "elsewhere")
    assert three.path == tmp_path / "elsewhere" / "cp" / "three-v0"
    a, _ = read_minari("cp/one-v0")
    b, _ = read_minari(str(three.path))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert one.return_mean == three.return_mean and one.steps == len(a["action"])
    assert (a["action"] != torch.from_numpy(cartpole_pd(a["observation"].numpy()))).float().mean() == pytest.approx(
        0.1, abs=0.04)  # 20% replaced by a uniform action, half of which differ


def test_bad_demos_input_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    spec = Spec("CartPole-v1", (4,), "discrete", 2)
    ep = {"observations": np.zeros((3, 4), np.float32), "actions": [0, 1], "rewards": [1.0, 1.0],
          "terminations": [False, True], "truncations": [False, False]}
    write_minari("cartpole/taken-v0", [ep], spec=spec, env_id="CartPole-v1")
    before = _store()
    proc = run_lrl("demos", "tests.experts:cartpole_pd", "--episodes", "1", "--env", "CartPole-v1", "--out",
                   "cartpole/taken-v0", env=ENV)
    _one_line_exit_2(proc, "--out=cartpole/taken-v0: a dataset of that id already exists", "pick another id")
    assert read_minari("cartpole/taken-v0")[0]["action"].tolist() == [0, 1]  # untouched
    for args, needle in ((["tests.experts:cartpole_pd"], "knows no env; pass --env"),
                         (["tests.experts:wrong_shape", "--env", "CartPole-v1"], "expected 1 integers in [0, 2)"),
                         (["tests.experts:nothing_here", "--env", "CartPole-v1"], "cannot be imported"),
                         (["tests.experts:cartpole_pd", "--env", "NoSuchEnv-v0"], "--env=NoSuchEnv-v0")):
        with pytest.raises(RecipeError, match=needle.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
            record(args[0], 1, "cartpole/new-v0", *args[2:3])
    assert _store() == before


def test_an_lrl_run_as_expert_and_one_of_another_env(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "ppo"
    train("ppo/cartpole", ["budget.frames=512", "eval.every=0", "eval.final=false", "checkpoint.every=0"],
          run_dir=run)
    out = record(str(run), 2, "cartpole/ppo-v0", num_envs=2)  # its own env, from the run's recipe
    data, spec = read_minari("cartpole/ppo-v0")
    assert spec.id == "CartPole-v1" and out.steps == len(data["action"])
    assert np.mean(_returns(data)) == pytest.approx(out.return_mean)
    before = _store()
    proc = run_lrl("demos", str(run), "--env", "Pendulum-v1", "--episodes", "1", "--out", "pendulum/ppo-v0")
    _one_line_exit_2(proc, f"expert={run}: the expert was trained on CartPole-v1", "does not match Pendulum-v1")
    assert _store() == before


# --- training on a Minari dataset ---------------------------------------------------------------------------------
def _recipe(tmp: Path, dataset: str, **extra: Any) -> str:
    recipe = {
        "name": "demos-classifier", "seed": 2,
        "algo": {"name": "tests.contract_modules:Classifier", "lr": 0.02},
        "data": {"name": "demos", "dataset": dataset, "batch_size": 64},
        "budget": {"steps": 40},
        "trainer": {"accelerator": "cpu", "devices": 1},
        "checkpoint": {"every": 20},
        "tracking": {"log_every": 10},
        **extra,
    }
    path = tmp / "demos.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def test_a_recipe_trains_on_a_recorded_dataset_and_resumes_exactly(tmp_path: Path) -> None:
    record("tests.experts:cartpole_pd", 2, "cartpole/pd-v0", "CartPole-v1")
    path = _recipe(tmp_path, "cartpole/pd-v0")
    straight = train(path, ["data.max_samples=600"], run_dir="runs/straight")
    assert straight.clock == 40 and straight.clock_unit == "steps"  # type: ignore[union-attr]
    ckdir = Path("runs/straight/checkpoints")
    final = _load(ckdir / "last.ckpt")
    from lrl.evaluate import policy_from_checkpoint

    obs = read_minari("cartpole/pd-v0")[0]["observation"][:600].numpy()  # the states it learned from
    accuracy = (policy_from_checkpoint(final)(obs) == cartpole_pd(obs)).mean()
    assert accuracy > 0.7, accuracy  # above chance after 40 steps: it learns from the expert's labels
    half = Path("runs/resumed/checkpoints")
    half.mkdir(parents=True)
    shutil.copy("runs/straight/recipe.yaml", "runs/resumed/recipe.yaml")
    shutil.copy(ckdir / "steps-0000000020.ckpt", half)
    assert resume(half / "steps-0000000020.ckpt").clock == 40
    assert_same(_resumable_parts(final), _resumable_parts(_load(half / "last.ckpt")))


def test_a_minari_dataset_as_a_named_stream(tmp_path: Path) -> None:
    from tests.contract_modules import DemoRegularisedPG

    record("tests.experts:cartpole_pd", 1, "cartpole/pd-v0", "CartPole-v1")
    recipe = {
        "name": "demo-regularised", "seed": 1,
        "algo": {"name": "tests.contract_modules:DemoRegularisedPG", "epochs": 1, "minibatch_size": 64},
        "env": {"id": "CartPole-v1", "num_envs": 2},
        "data": {"name": "onpolicy", "frames_per_batch": 64,
                 "streams": {"demos": {"dataset": "cartpole/pd-v0", "batch_size": 32, "max_samples": 96}}},
        "budget": {"frames": 256},
        "trainer": {"accelerator": "cpu", "devices": 1},
        "eval": {"every": 0, "final": False},
    }
    (tmp_path / "streams.yaml").write_text(yaml.safe_dump(recipe))
    DemoRegularisedPG.seen.clear()
    train(str(tmp_path / "streams.yaml"), [], run_dir="runs/streams")
    seen = DemoRegularisedPG.seen
    assert [s[1] for s in seen] == [32] * 4 and [s[3] for s in seen] == [True, False, False, True]  # 96 / 32 per pass


def test_bad_datasets_in_a_recipe_are_one_line_and_leave_no_run(tmp_path: Path) -> None:
    import gymnasium as gym
    import gymnasium_robotics  # noqa: F401  (registers PointMaze)

    from lrl.spec import spec_from_spaces

    maze = gym.make("PointMaze_UMaze-v3")
    goal_spec = spec_from_spaces("PointMaze_UMaze-v3", maze.observation_space, maze.action_space)
    maze.close()
    rng = np.random.default_rng(0)
    ep = {"observations": {k: rng.normal(size=(65, n)) for k, n in (("observation", 4), ("desired_goal", 2),
                                                                      ("achieved_goal", 2))},
          "actions": rng.uniform(-1, 1, size=(64, 2)), "rewards": np.zeros(64), "terminations": np.zeros(64, bool),
          "truncations": np.arange(64) == 63}
    write_minari("maze/random-v0", [ep], spec=goal_spec, env_id="PointMaze_UMaze-v3")
    record("tests.experts:cartpole_pd", 1, "cartpole/pd-v0", "CartPole-v1")
    # the recorded env is not installed here: the dataset still trains without an env: section
    meta_file = minari_store() / "cartpole" / "pd-v0" / "data" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    meta["env_spec"] = meta["env_spec"].replace("CartPole-v1", "NotInstalled-v0").replace("gymnasium.envs", "nopkg")
    meta_file.write_text(json.dumps(meta))
    path = _recipe(tmp_path, "cartpole/pd-v0", checkpoint={"every": 0})
    assert train(path, ["budget.steps=5"], run_dir="runs/no-env").clock == 5  # type: ignore[union-attr]

    proc = run_lrl("train", path, "data.dataset=nope/missing-v0", "--run-dir", "runs/bad", env=ENV)
    _one_line_exit_2(proc, "data.dataset=nope/missing-v0: no Minari dataset of that id")  # the command line's form
    assert not os.path.exists("runs/bad")
    for override, pattern in (
        ("data.dataset=maze/random-v0", "takes box observations, but PointMaze_UMaze-v3 has goal observations"),
        ("env={id: NotInstalled-v0}", r"env\.id=NotInstalled-v0: not installed here; .*remove the env: section"),
        ("env={id: Pendulum-v1}", r"data\.dataset=cartpole/pd-v0: the dataset .* does not match env\.id=Pendulum-v1"),
    ):
        with pytest.raises(RecipeError, match=pattern):
            train(path, [override], run_dir="runs/bad")
        assert not os.path.exists("runs/bad")


def test_bc_trains_through_the_cli_on_a_dataset_made_by_minaris_own_data_collector() -> None:
    """Not written by lrl: Minari's DataCollector wraps CartPole-v1 while the scripted expert acts; ``lrl train
    bc/cartpole`` learns from it by dataset id, with its spec from the dataset's metadata."""
    import gymnasium as gym
    import minari

    env = minari.DataCollector(gym.make("CartPole-v1"))
    for episode in range(3):
        obs, _ = env.reset(seed=episode)
        done = False
        while not done:
            obs, _, terminated, truncated, _ = env.step(int(cartpole_pd(np.asarray(obs)[None])[0]))
            done = terminated or truncated
    env.create_dataset(dataset_id="cartpole/collector-v0", algorithm_name="scripted", author="lrl tests",
                       author_email="tests@example.org", code_permalink="https://example.org", description="test")
    proc = run_lrl("train", "bc/cartpole", "data.dataset=cartpole/collector-v0", "budget.steps=400",
                   "data.batch_size=128", "eval.every=0", "eval.episodes=5", "checkpoint.every=0",
                   "--run-dir", "runs/bc-collector")
    assert proc.returncode == 0, proc.stderr
    done = next(line for line in proc.stderr.splitlines() if line.startswith("done:"))
    assert float(done.split("eval return ")[1].split()[0]) >= 400, done  # the expert scores 500
