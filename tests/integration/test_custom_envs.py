"""A user's own environment (``env.id: package.module:EnvId``) and wrappers (``env.wrappers``) through the real
command line: a PPO run on tests.custom_envs' LineWorld in two wrappers resumes exactly, ``lrl show`` and the saved
recipes carry the wrappers, ``lrl eval`` and ``lrl demos`` build the env in the evaluation wrappers (without the
train_only one), and bad ids or wrappers are one line, exit 2, with no run directory written."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path
from typing import Any

import mlflow
import pytest
import torch
import yaml
from typer.testing import CliRunner

from lrl.cli import app
from tests.conftest import run_lrl
from tests.integration.test_algorithms import _resumable_parts, assert_same
from tests.integration.test_cli import _error_line

runner = CliRunner()  # the real command line in this process, where a fresh process adds nothing to the check

ENV_ID = "tests.custom_envs:LineWorld-v0"
SCALE = {"wrapper": "tests.custom_envs.wrappers:ScaleReward", "kwargs": {"scale": 100.0}, "train_only": True}
APPEND = "tests.custom_envs.wrappers:AppendConstant"  # a bare string: a wrapper without kwargs
HALF = 256


def _recipe(tmp_path: Path, **env: Any) -> Path:
    data = {"name": "lineworld", "algo": {"name": "ppo", "minibatch_size": 64, "epochs": 2},
            "env": {"id": ENV_ID, "num_envs": 2, "kwargs": {"size": 6}, "wrappers": [SCALE, APPEND], **env},
            "data": {"frames_per_batch": 128}, "budget": {"frames": 2 * HALF},
            "eval": {"every": 0, "final": False, "video": False}, "checkpoint": {"every": HALF}}
    path = tmp_path / "lineworld.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _load(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=False)


def _pickled_env(state: Any) -> Any:
    """The vector env pickled into a checkpoint (the collector's state)."""
    if isinstance(state, dict):
        if isinstance(state.get("env"), bytes):
            return pickle.loads(state["env"])
        found = (_pickled_env(v) for v in state.values())
    elif isinstance(state, list | tuple):
        found = (_pickled_env(v) for v in state)
    else:
        return None
    return next((f for f in found if f is not None), None)


def test_custom_env_in_wrappers_trains_resumes_exactly_shows_evaluates_and_records(tmp_path: Path,
                                                                                  tracking_uri: str) -> None:
    recipe = _recipe(tmp_path)
    shown = runner.invoke(app, ["show", str(recipe)])
    assert shown.exit_code == 0, shown.output
    env = yaml.safe_load(shown.stdout)["env"]
    assert env["id"] == ENV_ID and env["kwargs"] == {"size": 6}
    assert env["wrappers"] == [SCALE, {"wrapper": APPEND, "kwargs": {}, "train_only": False}]

    straight = tmp_path / "straight"
    proc = run_lrl("train", str(recipe), "--run-dir", str(straight), "--tracking-uri", tracking_uri)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert yaml.safe_load((straight / "recipe.yaml").read_text())["env"]["wrappers"] == env["wrappers"]
    a = _load(straight / "checkpoints" / "last.ckpt")
    assert a["lrl"]["recipe"]["env"]["wrappers"] == env["wrappers"]
    vec = _pickled_env(a)
    assert vec.observation_space.shape == (2, 3)  # LineWorld's 2 features and the appended constant
    sub = vec.envs[0]
    assert type(sub).__name__ == "AppendConstant" and type(sub.env).__name__ == "ScaleReward"  # first innermost
    assert vec.observation_space.high[0, 2] == 1.0 and (vec.step([1, 1])[0][:, 2] == 1.0).all()
    # the training returns are LineWorld's scaled by 100 (the train_only wrapper): a reached goal pays 100
    client = mlflow.tracking.MlflowClient(tracking_uri)
    returns = [m.value for m in client.get_metric_history(a["lrl"]["mlflow_run_id"], "train/episode_return")]
    assert returns and max(returns) > 50

    mid = straight / "checkpoints" / f"frames-{HALF:010d}.ckpt"
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copy(straight / "recipe.yaml", resumed / "recipe.yaml")
    shutil.copy(mid, resumed / "checkpoints")
    proc = run_lrl("resume", str(resumed / "checkpoints" / mid.name), "--tracking-uri", tracking_uri)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same(_resumable_parts(a), _resumable_parts(_load(resumed / "checkpoints" / "last.ckpt")))

    # evaluation envs are LineWorld in AppendConstant only: its own reward, at most 1 per episode
    out = runner.invoke(app, ["eval", str(straight), "--episodes", "4", "--json"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert result["env"] == ENV_ID and -0.5 <= result["return_min"] <= result["return_max"] <= 1.0

    # demonstrations are recorded in the evaluation envs: the dataset's observations are the wrapped ones
    out = runner.invoke(app, ["demos", str(straight), "--episodes", "2", "--out", "lineworld/expert-v0"])
    assert out.exit_code == 0, out.output
    data = tmp_path / "minari" / "lineworld" / "expert-v0"
    meta = json.loads((data / "data" / "metadata.json").read_text())
    assert "AppendConstant" in meta["description"] and json.loads(meta["observation_space"])["shape"] == [3]


BAD = {
    "module missing": ({"id": "tests.no_such_envs:LineWorld-v0"},
                       "module 'tests.no_such_envs' cannot be imported (ModuleNotFoundError"),
    "id not registered": ({"id": "tests.custom_envs:LineWorlds-v0"},
                          "module 'tests.custom_envs' imports but registers no environment 'LineWorlds-v0'; "
                          "registered ids close to it: LineWorld-v0"),
    "not an import path": ({"wrappers": ["ScaleReward"]},
                           "env.wrappers.0.wrapper: expected an import path package.module:ClassName"),
    "wrapper not importable": ({"wrappers": ["tests.custom_envs.nowhere:ScaleReward"]},
                               "env.wrappers[0]=tests.custom_envs.nowhere:ScaleReward: module "
                               "'tests.custom_envs.nowhere' cannot be imported"),
    "no such class": ({"wrappers": [APPEND, "tests.custom_envs.wrappers:Scale"]},
                      "env.wrappers[1]=tests.custom_envs.wrappers:Scale: module 'tests.custom_envs.wrappers' has "
                      "no 'Scale'"),
    "not a wrapper": ({"wrappers": ["tests.custom_envs.wrappers:NotAWrapper"]},
                      "is class NotAWrapper, not a gymnasium.Wrapper subclass"),
    "bad kwargs": ({"wrappers": [APPEND, {"wrapper": SCALE["wrapper"], "kwargs": {"factor": 2}}]},
                   "env.wrappers[1]=tests.custom_envs.wrappers:ScaleReward: cannot wrap "
                   f"{ENV_ID} with kwargs {{'factor': 2}} (TypeError: "),
    "train_only changes a space": ({"wrappers": [{"wrapper": APPEND, "train_only": True}]},
                                   "env.wrappers: the train_only wrappers change the observation or action space"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_env_or_wrapper_is_one_line_and_writes_nothing(case: str, tmp_path: Path) -> None:
    env, message = BAD[case]
    result = runner.invoke(app, ["train", str(_recipe(tmp_path, **env))])
    assert result.exit_code == 2, result.output
    assert message in _error_line(result)
    assert not (tmp_path / "runs").exists()


def test_a_missing_module_is_one_line_in_a_fresh_process(tmp_path: Path) -> None:
    proc = run_lrl("train", "ppo/cartpole", "env.id=tests.no_such_envs:LineWorld-v0")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: recipe ppo/cartpole: env.id=tests.no_such_envs:LineWorld-v0: module "
                                  "'tests.no_such_envs' cannot be imported (ModuleNotFoundError"), proc.stderr
    assert not (tmp_path / "runs").exists()
