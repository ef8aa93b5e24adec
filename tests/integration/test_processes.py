"""Real processes: SIGINT mid-run then resume; 2-process CPU DDP; a real MLflow server on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.conftest import run_lrl


def _wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_sigint_writes_resumable_checkpoint_then_resume_finishes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lrl.cli", "train", "ppo/cartpole", "--run-dir", str(run), "budget.frames=400000",
         "checkpoint.every=4096", "eval.every=0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: (run / "checkpoints" / "frames-0000004096.ckpt").exists(), 120, "the first checkpoint")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "interrupted at" in err and "lrl resume" in err
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    stopped_at = ckpt["lrl"]["clock"]
    assert 4096 <= stopped_at < 400000
    assert not list((run / "checkpoints").glob(".*.tmp"))
    done = run_lrl("resume", str(run), "budget.frames=" + str(stopped_at + 2048), timeout=180)
    assert done.returncode == 0, done.stderr
    final = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert final["lrl"]["clock"] == stopped_at + 2048
    assert final["lrl"]["mlflow_run_id"] == ckpt["lrl"]["mlflow_run_id"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    store = tmp_path / "server"
    store.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{store}/db.sqlite", "--artifacts-destination", str(store / "artifacts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(uri + "/health", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        _wait_for(healthy, 90, "the MLflow server")
        yield uri
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_mlflow_server_params_metrics_artifacts(mlflow_server: str, tmp_path: Path) -> None:
    import mlflow

    run = tmp_path / "tracked"
    proc = run_lrl("train", "ppo/cartpole", "--tracking-uri", mlflow_server, "--run-dir", str(run),
                   "budget.frames=4096", "eval.every=2048", "eval.episodes=2", "tracking.experiment=itest",
                   env={"MLFLOW_TRACKING_URI": ""}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = mlflow.MlflowClient(tracking_uri=mlflow_server)
    exp = client.get_experiment_by_name("itest")
    assert exp is not None
    (r,) = client.search_runs([exp.experiment_id])
    assert r.data.params["algo.gamma"] == "0.98" and r.data.params["env.id"] == "CartPole-v1"
    history = client.get_metric_history(r.info.run_id, "eval/return_mean")
    assert [m.step for m in history] == [2048, 4096]  # steps are environment frames
    for key in ("train/episode_return", "loss/policy", "stats/approx_kl", "perf/fps"):
        assert key in r.data.metrics, key
    artifacts = {a.path for a in client.list_artifacts(r.info.run_id)}
    assert {"recipe.yaml", "learning_curve.png", "policy"} <= artifacts
    assert [a.path for a in client.list_artifacts(r.info.run_id, "policy")] == ["policy/last.ckpt"]
    videos = [a.path for a in client.list_artifacts(r.info.run_id, "videos")]  # uploaded through the server
    assert videos == ["videos/eval-000000002048.gif", "videos/eval-000000004096.gif"]
    models = client.search_logged_models([exp.experiment_id])
    assert [(m.name, m.source_run_id) for m in models] == [("model", r.info.run_id)]
    # resume continues the same run on the same server, steps still increasing
    more = run_lrl("resume", str(run), "budget.frames=6144", env={"MLFLOW_TRACKING_URI": ""}, timeout=300)
    assert more.returncode == 0, more.stderr[-3000:]
    steps = [m.step for m in client.get_metric_history(r.info.run_id, "eval/return_mean")]
    assert steps == [2048, 4096, 6144]
