"""A run's life as a user meets it (docs/runs.md): the console of a fresh run, resume refused at its budget, a corrupt
last.ckpt, the first rollout's metric point after a resume, kill -9 before the first checkpoint, ``lrl runs``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from lrl.cli import app
from tests.conftest import run_lrl

runner = CliRunner()
QUICK = ["eval.episodes=4", "tracking.log_every=2048"]


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


def _error_line(stderr: str) -> str:
    lines = _lines(stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def _steps(client: MlflowClient, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def test_a_run_from_start_to_corrupt_checkpoint_and_resume(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"  # a fresh store: MLflow creates its tables
    (tmp_path / "fresh").mkdir()
    proc = run_lrl("train", "ppo/cartpole", "budget.frames=2.56e3", "eval.every=1024", "checkpoint.every=1024",
                   *QUICK, "--run-dir", "runs/a", "--tracking-uri", store)
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr
    assert "eval @ 1,024 frames: return " in err and "(4 episodes)" in err, err  # evaluations as they happen
    noise = [ln for ln in _lines(err) if re.search(r"INFO|mlflow|alembic|torchrl", ln)]
    assert not noise, noise  # no library INFO lines on a fresh sqlite store
    info = json.loads(Path("runs/a/run.json").read_text())
    assert info["status"] == "FINISHED" and info["clock"] == 2560 and info["pid"] and info["host"]
    client = MlflowClient(store)
    run = client.get_run(info["mlflow_run_id"])
    assert re.fullmatch(r"ppo-cartpole-s0-\d{8}-\d{6}", run.info.run_name), run.info.run_name
    assert _steps(client, run.info.run_id, "train/episode_return")[0] == 256  # the first rollout's own point

    # resuming a run at its budget: refused in one line, nothing written, the MLflow run untouched
    before = sorted((p.name, p.stat().st_mtime_ns) for p in Path("runs/a").rglob("*"))
    result = runner.invoke(app, ["resume", "runs/a"])
    assert result.exit_code == 2
    assert _error_line(result.stderr) == ("error: the run already reached budget.frames=2560 (at 2560); pass "
                                          "budget.frames=K>2560 to extend it")
    assert sorted((p.name, p.stat().st_mtime_ns) for p in Path("runs/a").rglob("*")) == before
    again = client.get_run(run.info.run_id)
    assert (again.info.status, again.info.end_time) == ("FINISHED", run.info.end_time)

    # a truncated last.ckpt: eval and resume fall back to the newest readable periodic checkpoint, one warning
    last = Path("runs/a/checkpoints/last.ckpt")
    last.write_bytes(last.read_bytes()[:1000])
    with caplog.at_level("WARNING", logger="lrl"):
        result = runner.invoke(app, ["eval", "runs/a", "--episodes", "2", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["checkpoint"].endswith("frames-0000002048.ckpt")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "last.ckpt is unreadable or corrupt; using" in warnings[0], warnings
    assert "frames-0000002048.ckpt" in warnings[0]
    caplog.clear()
    with caplog.at_level("WARNING", logger="lrl"):
        result = runner.invoke(app, ["resume", "runs/a", "budget.frames=4096", "eval.every=0", "eval.final=false"])
    assert result.exit_code == 0, result.output
    assert sum("is unreadable or corrupt" in r.getMessage() for r in caplog.records) == 1
    assert "done: 4,096 frames" in result.stderr
    # the first rollout after the resume (2,048 + 256) has its metric point; log_every alone would skip it
    steps = _steps(client, run.info.run_id, "loss/policy")
    assert 2048 + 256 in steps and steps[-1] == 4096, steps
    assert client.get_run(run.info.run_id).info.status == "FINISHED"

    result = runner.invoke(app, ["runs", "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert (row["name"], row["status"], row["clock"], row["budget"]) == ("a", "FINISHED", 4096, 4096)
    assert row["mlflow_run_id"] == run.info.run_id and row["eval_return"] is not None


def test_kill_9_before_the_first_checkpoint(tracking_uri: str) -> None:
    # a first rollout of 409,600 frames: the process is killed while collecting it, before any checkpoint
    cmd = [sys.executable, "-m", "lrl.cli", "train", "ppo/cartpole", "budget.frames=1e7",
           "data.frames_per_batch=409600", "checkpoint.every=5e6", "eval.every=0", "--run-dir", "runs/k"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    info_file = Path("runs/k/run.json")
    deadline = time.monotonic() + 120
    while not info_file.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    assert proc.poll() is None, proc.communicate()[1]
    assert not any(Path("runs/k/checkpoints").iterdir())
    proc.kill()
    proc.communicate()
    run_id = json.loads(info_file.read_text())["mlflow_run_id"]
    client = MlflowClient(tracking_uri)
    assert client.get_run(run_id).info.status == "RUNNING"  # what kill -9 leaves behind

    result = runner.invoke(app, ["resume", "runs/k"])
    assert result.exit_code == 2
    assert _error_line(result.stderr) == (
        "error: runs/k has no checkpoint: the run stopped before its first one (killed?); start it again with "
        "lrl train runs/k/recipe.yaml --run-dir runs/k")
    assert client.get_run(run_id).info.status == "KILLED"
    result = runner.invoke(app, ["eval", "runs/k"])
    assert result.exit_code == 2 and "runs/k has no checkpoint: the run stopped before" in _error_line(result.stderr)
    result = runner.invoke(app, ["runs", "--json"])
    (row,) = json.loads(result.stdout)
    assert (row["status"], row["clock"], row["mlflow_run_id"]) == ("NO CHECKPOINT", None, run_id)


@pytest.mark.parametrize(("minutes", "saves"), [(0, 1), (10, 2), (1e-6, 4)])
def test_wall_clock_and_first_rollout_checkpoints(monkeypatch: pytest.MonkeyPatch, minutes: float, saves: int) -> None:
    """1,024 frames in rollouts of 256, no periodic checkpoints: last.ckpt at the end only (every_minutes=0), also after
    the first rollout (the default), or at every boundary once the wall-clock interval is always past."""
    from lrl.callbacks.checkpoint import ClockCheckpoint
    from lrl.launch import train

    names: list[tuple[str, int]] = []
    save = ClockCheckpoint.save

    def recording(self: ClockCheckpoint, trainer: object, name: str) -> Path:
        from lrl.contract import data_source

        names.append((name, data_source(trainer).clock))  # type: ignore[arg-type]
        return save(self, trainer, name)  # type: ignore[arg-type]

    monkeypatch.setattr(ClockCheckpoint, "save", recording)
    train("ppo/cartpole", ["budget.frames=1024", "checkpoint.every=0", f"checkpoint.every_minutes={minutes}",
                           "eval.every=0", "eval.final=false"], run_dir="runs/w")
    expected = {1: [1024], 2: [256, 1024], 4: [256, 512, 768, 1024]}[saves]
    assert names == [("last.ckpt", c) for c in expected]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _fake_run(run_dir: Path, run_id: str | None, uri: str, pid: int) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / "checkpoints").mkdir()
    (run_dir / "recipe.yaml").write_text("name: x\nbudget:\n  frames: 1e5\n")
    (run_dir / "run.json").write_text(json.dumps({"mlflow_run_id": run_id, "tracking_uri": uri, "pid": pid,
                                                  "host": os.uname().nodename, "status": "RUNNING"}))


def test_lrl_runs_marks_a_dead_running_run_killed(tracking_uri: str) -> None:
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name("lrl") or client.get_experiment(client.create_experiment("lrl"))
    run_id = client.create_run(exp.experiment_id).info.run_id
    _fake_run(Path("runs/dead"), run_id, tracking_uri, _dead_pid())
    _fake_run(Path("runs/alive"), None, tracking_uri, os.getpid())
    result = runner.invoke(app, ["runs"])
    assert result.exit_code == 0, result.output
    rows = {ln.split()[0]: ln.split()[1:] for ln in _lines(result.stdout)[1:]}
    assert rows["alive"][0] == "RUNNING" and rows["dead"][:2] == ["NO", "CHECKPOINT"]
    assert rows["dead"][2] == "-/100,000"
    assert client.get_run(run_id).info.status == "KILLED"
    assert json.loads(Path("runs/dead/run.json").read_text())["status"] == "KILLED"


def test_lrl_runs_without_mlflow_prints_the_table_and_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    _fake_run(Path("runs/gone"), "abc", "http://127.0.0.1:9", _dead_pid())
    with caplog.at_level("WARNING", logger="lrl"):
        result = runner.invoke(app, ["runs", "runs"])
    assert result.exit_code == 0, result.output
    assert "gone" in result.stdout and "NO CHECKPOINT" in result.stdout
    warnings = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(warnings) == 1 and "http://127.0.0.1:9" in warnings[0]
    missing = runner.invoke(app, ["runs", "no/such/dir"])
    assert missing.exit_code == 2 and "is not a directory" in missing.stderr


@pytest.mark.parametrize(("override", "shown"), [("budget.frames=1e5", "frames: 100000"),
                                                  ("eval.every=2.5e4", "every: 25000"),
                                                  ("algo.minibatch_size=1.28e2", "minibatch_size: 128")])
def test_integers_in_float_form(override: str, shown: str) -> None:
    result = runner.invoke(app, ["train", "ppo/cartpole", override, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert shown in result.stdout


@pytest.mark.parametrize("override", ["budget.frames=2.5", "eval.every=1e-3", "algo.minibatch_size=64.5"])
def test_non_integers_refused(override: str) -> None:
    result = runner.invoke(app, ["train", "ppo/cartpole", override, "--dry-run"])
    assert result.exit_code == 2
    assert f"{override.split('=')[0]}: must be an integer" in _error_line(result.stderr)
