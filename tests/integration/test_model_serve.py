"""A finished run's policy as an MLflow pyfunc model: the same actions as ``lrl.load_policy`` when loaded with
``mlflow.pyfunc.load_model`` (without importing lrl), from the model registry, and from a real
``mlflow models serve`` process."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
from mlflow import MlflowClient

import lrl
from tests.conftest import run_lrl

NAME = "lrl-test-cartpole"


def _observations() -> np.ndarray:
    """CartPole-like observations, wide enough that both actions occur."""
    return (np.random.default_rng(0).normal(size=(64, 4)) * [1.0, 1.0, 0.1, 1.0]).astype(np.float32)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def test_logged_model_acts_like_the_run_policy_loaded_registered_and_served(tracking_uri: str) -> None:
    out = run_lrl("train", "ppo/cartpole", "budget.frames=1024", "eval.video=false", "eval.episodes=1",
                  f"tracking.register_model={NAME}", "--run-dir", "run")
    assert out.returncode == 0, out.stderr
    assert "not logged as an MLflow model" not in out.stderr and "Traceback" not in out.stderr
    run_id = re.search(r"MLflow run (\w+)", out.stderr).group(1)  # type: ignore[union-attr]
    obs = _observations()
    expected = lrl.load_policy("run")(obs)
    assert expected.dtype == np.int64 and set(expected.tolist()) == {0, 1}

    mlflow.set_tracking_uri(tracking_uri)
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    np.testing.assert_array_equal(model.predict(obs), expected)
    signature = model.metadata.signature
    inputs, outputs = json.loads(signature.inputs.to_json()), json.loads(signature.outputs.to_json())
    assert inputs == [{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 4]}}]
    assert outputs == [{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]

    versions = MlflowClient(tracking_uri).search_model_versions(f"name='{NAME}'")
    version = next(v for v in versions if v.run_id == run_id)
    registered = mlflow.pyfunc.load_model(f"models:/{NAME}/{version.version}")
    np.testing.assert_array_equal(registered.predict(obs), expected)

    # the model's code needs torch, numpy and MLflow only: lrl is never imported to load and run it
    script = (f"import sys, numpy as np, mlflow; m = mlflow.pyfunc.load_model('runs:/{run_id}/model'); "
              f"print(m.predict(np.asarray({obs[:4].tolist()}, np.float32)).tolist()); "
              "assert not any(k == 'lrl' or k.startswith('lrl.') for k in sys.modules), 'lrl imported'")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    alone = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env,
                           cwd=Path.cwd())
    assert alone.returncode == 0, alone.stderr
    assert json.loads(alone.stdout.strip().splitlines()[-1]) == expected[:4].tolist()

    port = _free_port()
    server = subprocess.Popen(
        ["mlflow", "models", "serve", "-m", f"runs:/{run_id}/model", "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env={**os.environ, "MLFLOW_TRACKING_URI": tracking_uri})
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, server.stdout.read() if server.stdout else ""
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            assert time.monotonic() < deadline, "mlflow models serve did not answer /ping within 90 s"
            time.sleep(0.5)
        answer = _post(f"http://127.0.0.1:{port}/invocations", {"inputs": obs.tolist()})
        assert answer["predictions"] == expected.tolist()
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and the workers it started
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
