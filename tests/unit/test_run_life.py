"""The pieces of a run's life without training: integers in float form, the windowed rate, process liveness,
run.json, store URIs, the ``lrl runs`` table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lrl.callbacks.progress import ClockProgress
from lrl.errors import RecipeError
from lrl.recipe import load
from lrl.recipe.schema import exact_int
from lrl.runs import absolute_uri, process_alive, read_info, run_ended, run_started, table


@pytest.mark.parametrize(("value", "expected"), [("1e5", 100000), (1.0e5, 100000), ("2.5e3", 2500), (7, 7),
                                                 (True, True), ("abc", "abc"), ("12", "12"), (None, None)])
def test_exact_int_accepts_integers_in_float_form(value: object, expected: object) -> None:
    assert exact_int(value) == expected and type(exact_int(value)) is type(expected)


@pytest.mark.parametrize("value", [2.5, "1e-3", "1.5", float("nan"), float("inf"), "1e999"])
def test_exact_int_refuses_non_integers(value: object) -> None:
    with pytest.raises(ValueError, match="must be an integer"):
        exact_int(value)


def test_yaml_recipe_with_1e5(tmp_path: Path) -> None:
    from lrl.recipe.load import find_recipe

    src = find_recipe("ppo/cartpole").read_text()
    recipe = tmp_path / "r.yaml"
    recipe.write_text(src.replace("frames: 100000", "frames: 1e5").replace("every: 25000", "every: 2.5e+4"))
    resolved = load(str(recipe))
    assert resolved.budget.frames == 100000 and resolved.eval.every == 25000
    recipe.write_text(src.replace("frames: 100000", "frames: 1.5e-2"))
    with pytest.raises(RecipeError, match=r"budget.frames: must be an integer \(got 0.015\)"):
        load(str(recipe))


def test_rate_is_windowed() -> None:
    progress = ClockProgress(budget=10**6, window_s=30.0)
    from collections import deque

    progress._window = deque([(0.0, 0)])
    for t in range(1, 61):  # 1,000/s for the first 30 s, then 100/s
        clock = 1000 * t if t <= 30 else 30000 + 100 * (t - 30)
        rate = progress.rate(float(t), clock)
    assert rate == pytest.approx(100.0)  # the last 30 s only, not the run's mean (550/s)
    assert progress.rate(60.5, 33050) == pytest.approx(100.0, rel=0.05)


def test_process_alive_and_run_json(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = os.uname().nodename
    assert process_alive({"pid": dead.pid, "host": host}) is False
    assert process_alive({"pid": os.getpid(), "host": host}) is True
    assert process_alive({"pid": os.getpid(), "host": "elsewhere"}) is None  # cannot tell: never marked
    assert process_alive({"pid": os.getpid(), "host": host, "proc_start": "1"}) is False  # a reused pid
    run_started(tmp_path, "abc", "sqlite:///m.db")
    info = read_info(tmp_path)
    assert info["status"] == "RUNNING" and info["pid"] == os.getpid() and process_alive(info) is True
    assert info["tracking_uri"] == f"sqlite:///{Path('m.db').resolve()}"
    run_ended(tmp_path, "FINISHED", 4096, {"return_mean": 12.5, "clock": 4096})
    info = read_info(tmp_path)
    assert (info["status"], info["clock"], info["eval_return"]) == ("FINISHED", 4096, 12.5)


def test_absolute_uri_keeps_absolute_and_remote_uris() -> None:
    for uri in ("sqlite:////tmp/x.db", "http://127.0.0.1:5000", "file:///tmp/mlruns"):
        assert absolute_uri(uri) == uri


def test_table_columns() -> None:
    rows = [{"name": "ppo-cartpole/1", "status": "FINISHED", "clock": 100000, "budget": 100000, "unit": "frames",
             "eval_return": 500.0, "mlflow_run_id": "abc"},
            {"name": "x", "status": "NO CHECKPOINT", "clock": None, "budget": None, "unit": "frames",
             "eval_return": None, "mlflow_run_id": None}]
    lines = table(rows).splitlines()
    assert lines[0].split() == ["RUN", "STATUS", "CLOCK/BUDGET", "EVAL", "RETURN", "MLFLOW", "RUN"]
    assert lines[1].split() == ["ppo-cartpole/1", "FINISHED", "100,000/100,000", "frames", "500.0", "abc"]
    assert lines[2].split() == ["x", "NO", "CHECKPOINT", "-/?", "frames", "-", "-"]
    assert lines[1].index("FINISHED") == lines[2].index("NO CHECKPOINT")  # aligned columns
