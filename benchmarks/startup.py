"""Where an ``lrl train`` process spends the time that is not training: a timeline without a profiler.

``profile_run.py`` splits a run under ``cProfile``, which inflates imports several-fold; this script runs the recipe
in fresh processes with plain timers around the stages of ``lrl.launch.train`` and prints, per stage, the median
seconds over ``--reps`` processes: ``import torch``, ``import lightning`` (with what Lightning imports: torchmetrics
and, through it, transformers and scipy.signal where installed), ``import mlflow``, recipe validation, opening the
MLflow store (``check_reachable``), building the module, DataModule and Trainer, ``fit``, the run's artifacts, the
model export, and the rest. All processes share one MLflow store, as a user's runs do; the first one creates it
(its store time is printed apart).

    LRL_NUM_THREADS=1 python benchmarks/startup.py ppo/cartpole [--reps 3] [override ...]

The default overrides keep ``fit`` short (2048 frames, no evaluation, no checkpoints): the point is everything else.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

SHORT = ["budget.frames=2048", "eval.every=0", "eval.final=false", "checkpoint.every=0"]


def child(recipe: str, overrides: list[str], work: str) -> dict[str, float]:
    """One process: import, train, and return seconds per stage."""
    t0 = time.perf_counter()
    stages: dict[str, float] = {}

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        stages[name] = stages.get(name, 0.0) + now - since
        return now

    t = t0
    for name, module in [("import torch", "torch"),
                         ("import lightning (torchmetrics, transformers, scipy.signal)", "lightning"),
                         ("import mlflow", "mlflow")]:
        importlib.import_module(module)
        t = lap(name, t)
    import lightning as L

    import lrl.launch as launch
    import lrl.tracking as tracking

    lap("import lrl", t)

    def timed(owner: Any, attr: str, name: str) -> None:
        fn: Callable[..., Any] = getattr(owner, attr)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                lap(name, start)

        setattr(owner, attr, wrapper)

    timed(launch, "load", "recipe validation")
    timed(tracking, "check_reachable", "open the MLflow store")
    timed(L.Trainer, "fit", "fit")
    timed(tracking, "log_run_artifacts", "run artifacts")
    timed(launch, "_log_model", "model export (MLflow pyfunc)")
    start = time.perf_counter()
    launch.train(recipe, overrides, run_dir=os.path.join(work, f"run-{os.getpid()}"),
                 tracking_uri=f"sqlite:///{work}/mlflow.db")
    lap("train() in all", start)
    stages["whole process"] = time.perf_counter() - t0
    return stages


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe")
    ap.add_argument("overrides", nargs="*", help=f"recipe overrides (default: {' '.join(SHORT)})")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    overrides = args.overrides or SHORT
    if args.child:
        print(json.dumps(child(args.recipe, overrides, args.child)))
        return 0
    env = {**os.environ, "LRL_NUM_THREADS": os.environ.get("LRL_NUM_THREADS", "1")}
    work = tempfile.mkdtemp(prefix="lrl-startup-")
    runs: list[dict[str, float]] = []
    for _ in range(args.reps + 1):  # the first process creates the store; the medians are over the others
        out = subprocess.run([sys.executable, __file__, args.recipe, *overrides, "--child", work], env=env,
                             capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    first, rest = runs[0], runs[1:]
    print(f"{args.recipe} {' '.join(overrides)}: medians of {len(rest)} processes sharing one MLflow store "
          f"(load1 {os.getloadavg()[0]:.2f}, threads {env['LRL_NUM_THREADS']})")
    for name in first:
        print(f"  {name:<72} {statistics.median(r[name] for r in rest):6.2f} s")
    timed = [s for s in first if s not in ("train() in all", "whole process")]
    other = statistics.median(r["whole process"] - sum(r[s] for s in timed) for r in rest)
    print(f"  {'other (probe, module, DataModule, Trainer, MLflow run)':<72} {other:6.2f} s")
    print(f"  (the first process, creating the store: open the MLflow store {first['open the MLflow store']:.2f} s, "
          f"whole process {first['whole process']:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
