"""DAgger end to end through the command line: rounds of collection and training, an exact resume from a checkpoint
taken in the middle of a round, an expert of another environment refused in one line before anything is written,
and two DDP processes training on the same aggregate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from lrl.data.dataset import save_dataset
from lrl.data.minari_io import read_minari
from lrl.errors import RecipeError
from lrl.launch import train
from lrl.spec import Spec
from tests.conftest import run_lrl
from tests.dagger_helpers import EXPERT, cartpole_expert
from tests.integration.test_algorithms import _load, _resumable_parts, assert_same

ROOT = Path(__file__).resolve().parents[2]
ENV = {"PYTHONPATH": str(ROOT)}  # tests/ importable in the CLI's process
OTHER = "tests.contract_modules:Classifier"  # trains the expert of another env: any offline learner


def _recipe(tmp: Path, **data: Any) -> str:
    recipe = {
        "name": "dagger-test", "seed": 2,
        "algo": {"name": "bc", "lr": 0.01, "hidden": [32]},
        "env": {"id": "CartPole-v1", "num_envs": 2},
        "data": {"name": "dagger", "expert": EXPERT, "episodes_per_round": 2, "steps_per_round": 10,
                 "batch_size": 32, "label_budget": 1800, **data},
        "budget": {"steps": 60},
        "trainer": {"accelerator": "cpu", "devices": 1},
        "checkpoint": {"every": 15},
        "eval": {"every": 0, "final": False},
        "tracking": {"log_every": 10},
    }
    path = tmp / "dagger.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def _state(ckpt: dict[str, Any]) -> dict[str, Any]:
    return ckpt["DaggerDataModule"]


def test_rounds_train_and_resume_exactly_from_the_middle_of_a_round(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path)
    proc = run_lrl("train", recipe, "--run-dir", "runs/straight", env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckdir = Path("runs/straight/checkpoints")
    final = _load(ckdir / "last.ckpt")
    state = _state(final)
    rank = state["ranks"][0]
    # 60 steps, a round every 10: round 0 (two expert episodes, 1000 labels) and rounds 1-5 of the learner, until
    # the label budget; then training goes on over the aggregate
    assert final["global_step"] == 60 and rank["steps"] == 60
    assert rank["labels"] == sum(len(c["action"]) for c in state["aggregate"]) == 1800  # the budget, exactly
    assert rank["round"] >= 3  # a round was collected after step 15: the resumed run collects too
    assert len(state["aggregate"][0]["action"]) == 1000
    labels = torch.cat([c["action"] for c in state["aggregate"]])
    obs = torch.cat([c["observation"] for c in state["aggregate"]])
    assert torch.equal(labels, torch.from_numpy(cartpole_expert(obs.numpy())))
    mid = _load(ckdir / "steps-0000000015.ckpt")
    assert _state(mid)["ranks"][0]["steps_in_round"] == 5 and _state(mid)["ranks"][0]["round"] == 2
    for k, v in _state(mid)["aggregate"][0].items():  # round 0 as it was at step 15, byte for byte
        assert torch.equal(state["aggregate"][0][k], v)

    half = Path("runs/resumed/checkpoints")
    half.mkdir(parents=True)
    shutil.copy("runs/straight/recipe.yaml", "runs/resumed/recipe.yaml")
    shutil.copy(ckdir / "steps-0000000015.ckpt", half)
    proc = run_lrl("resume", str(half / "steps-0000000015.ckpt"), env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same(_resumable_parts(final), _resumable_parts(_load(half / "last.ckpt")))
    # every collected round is a Minari dataset of the run directory, equal to its chunk of the aggregate; the
    # resumed run saved the rounds it collected after step 15 (round 2 on), the same ones
    for run, rounds in (("runs/straight", range(rank["round"])), ("runs/resumed", range(2, rank["round"]))):
        assert sorted(p.name for p in Path(run, "dagger").glob("round-*")) == [f"round-{i:03d}-v0" for i in rounds]
        for i in rounds:
            flat, _ = read_minari(str(Path(run, "dagger", f"round-{i:03d}-v0")))
            for key in ("observation", "action", "next/done"):
                assert torch.equal(flat[key], state["aggregate"][i][key]), (run, i, key)


def _other_env_run(tmp: Path) -> Path:
    """An lrl run trained on Pendulum-v1 (continuous actions): an expert for another environment."""
    spec = Spec("Pendulum-v1", (3,), "continuous", 1, (-2.0,), (2.0,))
    data = save_dataset(tmp / "pendulum.pt", {"observation": torch.randn(64, 3), "action": torch.randn(64, 1)}, spec)
    recipe = {"name": "pendulum-expert", "algo": {"name": OTHER}, "data": {"name": "offline", "path": str(data),
              "batch_size": 32}, "budget": {"steps": 2}, "trainer": {"accelerator": "cpu", "devices": 1}}
    (tmp / "pendulum.yaml").write_text(yaml.safe_dump(recipe))
    train(str(tmp / "pendulum.yaml"), run_dir=tmp / "pendulum-run")
    return tmp / "pendulum-run"


def test_an_expert_of_another_env_is_one_line_and_nothing_is_written(tmp_path: Path) -> None:
    expert = _other_env_run(tmp_path)
    proc = run_lrl("train", _recipe(tmp_path), f"data.expert={expert}", "--run-dir", "runs/bad", env=ENV)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "data.expert=" in lines[0] and "the expert was trained on Pendulum-v1" in lines[0]
    assert not Path("runs/bad").exists()
    for override, message in (("data.expert=tests.dagger_helpers:nothing", "cannot be imported"),
                              ("data.expert=/no/such/run", "an expert is an lrl run directory")):
        with pytest.raises(RecipeError, match=message) as err:
            train(_recipe(tmp_path), [override], run_dir="runs/bad")
        assert err.value.message.count("data.expert=") == 1 and "\n" not in err.value.message
        assert not Path("runs/bad").exists()


def test_two_ddp_processes_train_on_the_same_aggregate(tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    proc = run_lrl("train", _recipe(tmp_path), "budget.steps=30", "checkpoint.every=0", "trainer.devices=2",
                   "trainer.strategy=ddp", "data.episodes_per_round=3", "data.label_budget=null", "--run-dir", str(run),
                   env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    digests = json.loads((run / "ddp_params.json").read_text())["sha256_per_rank"]
    assert len(digests) == 2 and digests[0] == digests[1]
    state = _state(_load(run / "checkpoints" / "last.ckpt"))
    assert state["world_size"] == 2
    ranks = state["ranks"]
    assert ranks[0]["labels"] == ranks[1]["labels"] == sum(len(c["action"]) for c in state["aggregate"])
    assert len(state["aggregate"][0]["action"]) == 1500  # 3 expert episodes: 2 run by rank 0, 1 by rank 1
    assert len(state["aggregate"]) == ranks[0]["round"] == 3  # rounds at steps 0, 10, 20


@pytest.mark.parametrize("override", ["data.beta=1.5", "data.episodes_per_round=0", "data.label_budget=0",
                                      "data.beta_schedule=cosine", "data.steps_per_round=0"])
def test_bad_arguments_are_refused_by_validate(tmp_path: Path, override: str) -> None:
    from lrl.recipe import load

    with pytest.raises(RecipeError) as err:
        load(_recipe(tmp_path), [override])
    assert override.split("=")[0] in err.value.message and "\n" not in err.value.message
