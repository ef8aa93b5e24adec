from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

if os.environ.get("PYTEST_XDIST_WORKER"):
    # several test workers share the cores: one torch thread each (and in the lrl processes they start), or
    # their spinning OpenMP threads oversubscribe the machine and every test slows down by several times
    os.environ.setdefault("LRL_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One local MLflow store for the whole session (creating a store costs seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tracking_uri: str) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))  # a test's Minari store is its own
    monkeypatch.chdir(tmp_path)
    # an in-process run hands its directory to the DDP processes it starts through this variable; a value left by
    # an earlier test in the same worker would make a child process of a later test join that run
    monkeypatch.delenv("LRL_RUN_DIR", raising=False)


def run_lrl(*args: str, timeout: float = 300, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The real command line, in a fresh process; the repository root is on its path, so recipes may name code in
    the ``tests`` package (custom envs, wrappers, experts) as users name theirs."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return subprocess.run([sys.executable, "-m", "lrl.cli", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": path, **(env or {})}, cwd=cwd)
