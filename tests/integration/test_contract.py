"""Contract v2 beyond environments (docs/contract.md): a recipe with no ``env:`` section and an offline source
validates, trains for a budget of gradient steps, checkpoints and resumes exactly; two named streams (an on-policy
rollout and offline demonstrations) reach every update with their own boundaries and resume exactly too.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml

from lrl.data.dataset import save_dataset
from lrl.errors import RecipeError
from lrl.launch import resume, train
from lrl.recipe import load
from lrl.spec import Spec
from tests.conftest import run_lrl
from tests.integration.test_algorithms import _load, _resumable_parts, assert_same

ROOT = Path(__file__).resolve().parents[2]
CARTPOLE = Spec("CartPole-v1", (4,), "discrete", 2)


def _dataset(path: Path, n: int = 200, seed: int = 0) -> Path:
    """Labelled CartPole-like states: the action is 1 when the pole leans right (a rule a classifier can learn)."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, 4, generator=g)
    action = (obs[:, 2] + 0.5 * obs[:, 3] > 0).long()
    return save_dataset(path, {"observation": obs, "action": action}, CARTPOLE)


def _offline_recipe(tmp: Path, **budget: int) -> Path:
    recipe = {
        "name": "offline-classifier", "seed": 3,
        "algo": {"name": "tests.contract_modules:Classifier", "lr": 0.02},
        "data": {"name": "offline", "path": str(_dataset(tmp / "demos.pt")), "batch_size": 32},
        "budget": budget or {"steps": 40},
        "trainer": {"accelerator": "cpu", "devices": 1},
        "checkpoint": {"every": 20},
        "tracking": {"log_every": 10},
    }
    path = tmp / "offline.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_offline_recipe_without_env_validates_and_counts_gradient_steps(tmp_path: Path) -> None:
    recipe = load(str(_offline_recipe(tmp_path)))
    assert recipe.env is None and recipe.budget.unit == "steps" and recipe.data["name"] == "offline"
    proc = run_lrl("validate", str(tmp_path / "offline.yaml"), env={"PYTHONPATH": str(ROOT)})  # tests/ importable
    assert proc.returncode == 0, proc.stderr
    for override, message in (("budget={frames: 100}", "budget.frames: data.name=offline counts steps, samples"),
                              ("data.name=onpolicy", "learns from offline or demos or dagger data"),
                              ("data.path=/nonexistent.pt", "no such dataset file")):
        with pytest.raises(RecipeError, match=message):
            train(str(tmp_path / "offline.yaml"), [override], run_dir="runs/bad")
        assert not Path("runs/bad").exists()


def test_offline_run_learns_checkpoints_by_steps_and_resumes_exactly(tmp_path: Path) -> None:
    path = str(_offline_recipe(tmp_path))
    straight = train(path, ["budget.steps=40"], run_dir="runs/straight")
    assert straight.clock == 40 and straight.clock_unit == "steps" and straight.eval is None  # type: ignore[union-attr]
    ckdir = Path("runs/straight/checkpoints")
    assert sorted(p.name for p in ckdir.glob("*.ckpt")) == ["last.ckpt", "steps-0000000020.ckpt",
                                                           "steps-0000000040.ckpt"]
    final = _load(ckdir / "last.ckpt")
    assert final["lrl"]["clock"] == 40 and final["lrl"]["clock_unit"] == "steps" and final["global_step"] == 40
    # the classifier learned the labelling rule (40 Adam steps on 200 samples): well above chance
    from lrl.evaluate import policy_from_checkpoint

    obs = torch.randn(500, 4, generator=torch.Generator().manual_seed(9))
    want = (obs[:, 2] + 0.5 * obs[:, 3] > 0).long().numpy()
    accuracy = (policy_from_checkpoint(final)(obs.numpy()) == want).mean()
    assert accuracy > 0.85, accuracy

    half = Path("runs/resumed/checkpoints")
    half.mkdir(parents=True)
    shutil.copy("runs/straight/recipe.yaml", "runs/resumed/recipe.yaml")
    shutil.copy(ckdir / "steps-0000000020.ckpt", half)
    out = resume(half / "steps-0000000020.ckpt")
    assert out.clock == 40
    assert_same(_resumable_parts(final), _resumable_parts(_load(half / "last.ckpt")))


def test_samples_clock_and_evaluation_in_an_env_section(tmp_path: Path) -> None:
    """An offline run may name an env to evaluate in: it must describe the dataset's observations and actions."""
    path = str(_offline_recipe(tmp_path, samples=320))
    with pytest.raises(RecipeError, match=r"does not match env\.id=Pendulum-v1"):
        train(path, ["env={id: Pendulum-v1}"], run_dir="runs/bad")
    out = train(path, ["checkpoint.every=0", "env={id: CartPole-v1}", "eval.episodes=2"], run_dir="runs/samples")
    assert out.clock == 320 and out.clock_unit == "samples"  # type: ignore[union-attr]
    assert out.eval is not None and out.eval["episodes"] == 2 and out.eval["clock"] == 320  # type: ignore[union-attr]
    assert _load(Path("runs/samples/checkpoints/last.ckpt"))["global_step"] == 10  # 320 samples / 32 per step


# --- two streams in every update --------------------------------------------------------------------------------
def _stream_recipe(tmp: Path, n_demos: int = 96) -> str:
    recipe = {
        "name": "demo-regularised", "seed": 1,
        "algo": {"name": "tests.contract_modules:DemoRegularisedPG", "epochs": 2, "minibatch_size": 32},
        "env": {"id": "CartPole-v1", "num_envs": 2},
        "data": {"name": "onpolicy", "frames_per_batch": 64,
                 "streams": {"demos": {"path": str(_dataset(tmp / "demos.pt", n=n_demos, seed=1)), "batch_size": 32}}},
        "budget": {"frames": 256},
        "trainer": {"accelerator": "cpu", "devices": 1},
        "eval": {"every": 0, "final": False},
    }
    (tmp / "streams.yaml").write_text(yaml.safe_dump(recipe))
    return str(tmp / "streams.yaml")


def test_two_streams_each_with_its_own_boundary(tmp_path: Path) -> None:
    from tests.contract_modules import DemoRegularisedPG

    DemoRegularisedPG.seen.clear()
    train(_stream_recipe(tmp_path), [], run_dir="runs/streams")
    seen = DemoRegularisedPG.seen
    # rollout: 4 rollouts of 64 frames, 2 epochs x 2 minibatches of 32 -> 16 updates, a new rollout every 4th
    assert [s[0] for s in seen] == [32] * 16 and [s[2] for s in seen] == [i % 4 == 0 for i in range(16)]
    # demos: 96 samples in minibatches of 32 -> a new pass every 3rd update, independently of the rollouts
    assert [s[1] for s in seen] == [32] * 16 and [s[3] for s in seen] == [i % 3 == 0 for i in range(16)]


def test_two_stream_run_resumes_exactly_and_validate_requires_the_stream(tmp_path: Path) -> None:
    path = _stream_recipe(tmp_path)
    with pytest.raises(RecipeError, match=r"data\.streams\.demos: required by algo\.name"):
        load(path, ["data.streams=null"])
    train(path, ["budget.frames=320", "checkpoint.every=128"], run_dir="runs/straight")
    mid = Path("runs/straight/checkpoints/frames-0000000128.ckpt")
    half = Path("runs/resumed/checkpoints")
    half.mkdir(parents=True)
    shutil.copy("runs/straight/recipe.yaml", "runs/resumed/recipe.yaml")
    shutil.copy(mid, half)
    assert resume(half / mid.name).clock == 320
    straight, resumed = _load(Path("runs/straight/checkpoints/last.ckpt")), _load(half / "last.ckpt")
    assert straight["OnPolicyDataModule"]["ranks"][0]["streams"]["demos"]["passes"] > 1
    assert_same(_resumable_parts(straight), _resumable_parts(resumed))
