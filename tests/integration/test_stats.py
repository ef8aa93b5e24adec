"""``lrl seeds`` / ``lrl report`` / ``lrl compare``: nested runs under one parent, and numbers equal to rliable's own on
the values read back from MLflow (point estimates exactly, intervals with the same bootstrap seed)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from lrl.cli import app
from tests.conftest import run_lrl

TINY = ("budget.frames=1024", "eval.every=512", "eval.episodes=2")
REPS = 300
runner = CliRunner()


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory, tracking_uri: str) -> dict[str, Any]:
    """Three seeds of a tiny PPO run, two at a time, through the real command line."""
    from mlflow import MlflowClient

    cwd = tmp_path_factory.mktemp("sweep")
    proc = run_lrl("seeds", "ppo/cartpole", "--seeds", "0-2", "--jobs", "2", "--experiment", "stats-test",
                   "--reps", str(REPS), *TINY, cwd=cwd, env={"MLFLOW_TRACKING_URI": tracking_uri})
    assert proc.returncode == 0, proc.stderr
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name("stats-test")
    (parent,) = client.search_runs([exp.experiment_id], filter_string="tags.`lrl.kind` = 'seeds'")
    (sweep_dir,) = (cwd / "runs" / "ppo-cartpole").glob("seeds-*")
    return {"cwd": cwd, "proc": proc, "client": client, "parent": parent, "dir": sweep_dir}


def _final(client: Any, run_id: str) -> float:
    history = client.get_metric_history(run_id, "eval/return_mean")
    return max(history, key=lambda m: m.step).value


def _seeded_intervals(score_dict: dict[str, Any], func: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    from rliable import library as rly

    np.random.seed(0)  # lrl's default bootstrap seed; rliable resamples with numpy's global generator
    return rly.get_interval_estimates(score_dict, func, reps=REPS)


def _invoke(*args: str) -> Any:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


def test_seeds_report_compare(sweep: dict[str, Any], tmp_path: Path) -> None:
    from rliable import metrics

    client, parent = sweep["client"], sweep["parent"]
    pid = parent.info.run_id
    assert parent.info.run_name == "ppo-cartpole seeds 0-2" and parent.info.status == "FINISHED"
    children = client.search_runs([parent.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{pid}'")
    assert sorted(c.data.params["seed"] for c in children) == ["0", "1", "2"]
    for c in children:  # nested runs, each in its own run directory of the sweep
        assert c.info.status == "FINISHED" and c.data.tags["mlflow.parentRunId"] == pid
        assert c.data.tags["lrl.run_dir"] == str((sweep["dir"] / f"seed-{c.data.params['seed']}").resolve())
    artifacts = {Path(a.path).name for a in client.list_artifacts(pid, "report")}
    assert {"report.json", "aggregates.png", "performance_profile.png", "learning_curves.png"} <= artifacts
    assert "3 of 3 seeds finished" in sweep["proc"].stderr

    out = _invoke("report", pid, "--json", str(tmp_path / "r.json"), "--plots", str(tmp_path / "plots"),
                  "--reps", str(REPS))
    assert "ppo-cartpole seeds 0-2" in out.stdout and "IQM" in out.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    (group,) = report["groups"]
    assert report["env"] == "CartPole-v1" and report["gap_threshold"] == 475.0 and report["parent_run_id"] == pid
    assert [r["seed"] for r in group["runs"]] == ["0", "1", "2"]
    scores = np.array([[_final(client, r["run_id"])] for r in group["runs"]])  # read back from MLflow

    def func(x: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(x), metrics.aggregate_mean(x), metrics.aggregate_median(x.T),
                         metrics.aggregate_optimality_gap(x, 475.0)])

    points, cis = _seeded_intervals({"g": scores}, func)
    for i, name in enumerate(("iqm", "mean", "median", "optimality_gap")):
        assert group[name]["value"] == points["g"][i], name
        assert group[name]["ci"] == [cis["g"][0, i], cis["g"][1, i]], name
    assert group["median"]["value"] == float(np.median(scores))  # across runs, not rliable's median of task means
    assert group["curve"]["frames"] == [512, 1024] and group["curve"]["dropped_frames"] == []
    assert group["curve"]["iqm"][-1] == points["g"][0]  # the curve ends at the final evaluation
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "aggregates.png", "learning_curves.png", "performance_profile.png"]
    by_experiment = json.loads(json.dumps(report))
    _invoke("report", "stats-test", "--json", str(tmp_path / "e.json"), "--reps", str(REPS))
    assert json.loads((tmp_path / "e.json").read_text())["groups"] == by_experiment["groups"]

    seed_dirs = [str(sweep["dir"] / f"seed-{s}") for s in (0, 1)]
    _invoke("compare", pid, ",".join(seed_dirs), "--json", str(tmp_path / "c.json"), "--reps", str(REPS))
    cmp = json.loads((tmp_path / "c.json").read_text())
    a = np.array([[_final(client, r["run_id"])] for r in cmp["a"]["runs"]])
    b = np.array([[_final(client, r["run_id"])] for r in cmp["b"]["runs"]])
    assert len(a) == 3 and len(b) == 2

    def poi(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.array([metrics.probability_of_improvement(x, y)])

    points, cis = _seeded_intervals({"ab": (a, b)}, poi)
    assert cmp["probability_of_improvement"] == {"value": points["ab"][0], "ci": [cis["ab"][0, 0], cis["ab"][1, 0]]}
    for side, m in (("a", a), ("b", b)):
        assert cmp[side]["iqm"]["value"] == metrics.aggregate_iqm(m)


def _error_line(result: Any) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return str(lines[0])


def test_bad_input(sweep: dict[str, Any], tmp_path: Path) -> None:
    seed0 = str(sweep["dir"] / "seed-0")
    other = run_lrl("train", "ppo/cartpole", "env.id=Acrobot-v1", "budget.frames=512", "eval.every=512",
                    "eval.episodes=1", "--run-dir", str(tmp_path / "acrobot"))
    assert other.returncode == 0, other.stderr
    for args, fragment in [
        (["report", seed0, str(tmp_path / "acrobot")], "runs of different environments (CartPole-v1: 1 run, "
                                                       "Acrobot-v1: 1 run)"),
        (["compare", seed0 + "," + str(sweep["dir"] / "seed-1"), str(tmp_path / "acrobot")], "different environments"),
        (["report", str(tmp_path)], "is not an lrl run"),
        (["report", "no-such-experiment"], "is neither a run directory, an MLflow run id nor an experiment"),
        (["report", seed0], "has 1 run; a confidence interval needs at least 2"),
        (["seeds", "ppo/cartpole", "--seeds", "3-1"], "the range '3-1' is empty"),
        (["seeds", "ppo/cartpole", "--seeds", "0-1", "seed=4"], "seed=... is set per run by --seeds"),
    ]:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert fragment in _error_line(result)
    from mlflow import MlflowClient

    MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).create_experiment("stats-empty")
    result = runner.invoke(app, ["report", "stats-empty"])
    assert result.exit_code == 2 and "has no finished runs with eval/return_mean" in _error_line(result)
    assert not Path("runs").exists()  # the refused sweeps wrote nothing
