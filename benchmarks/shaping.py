"""Frames to the bar: the plain, shaped and curriculum MountainCar DQN recipes over seeds (docs/shaping.md).

Each (recipe, seed) is one ``lrl train`` process (one torch thread, its own MLflow sqlite store) with evaluation
every ``--eval-every`` frames. Frames-to-bar is the step of the first ``eval/return_mean`` at or above ``--bar``
(deterministic policy, ``--eval-episodes`` episodes, on the plain env: the target task, its own reward); a run that
never gets there counts as "> budget" and sorts last for the median. A first evaluation at the bar need not last
(the shaped recipe can reach it early, then fall back), so the final and the best evaluation are reported too.
Prints one Markdown row per recipe (median and per seed, final and best evaluation, minutes) and, for curricula,
the frames of each stage advance; ``--out`` appends one JSON line per recipe.

    python benchmarks/shaping.py --quick                       # 1 seed, 60k frames, eval every 5k (10 episodes)
    python benchmarks/shaping.py --seeds 5 --jobs 16           # the recipes as shipped (120k frames)
    python benchmarks/shaping.py --recipes dqn/mountaincar dqn/mountaincar-shaped --seeds 3 --frames 80000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ["dqn/mountaincar", "dqn/mountaincar-shaped", "dqn/mountaincar-curriculum"]


def _command(recipe: str, seed: int, args: argparse.Namespace, run_dir: Path, uri: str) -> list[str]:
    overrides = [f"seed={seed}", f"eval.every={args.eval_every}", f"eval.episodes={args.eval_episodes}",
                 "checkpoint.every=0", "tracking.experiment=shaping-benchmark"]
    if args.frames:
        overrides.append(f"budget.frames={args.frames}")
    overrides += args.override
    return [sys.executable, "-m", "lrl.cli", "train", recipe, *overrides, "--run-dir", str(run_dir),
            "--tracking-uri", uri]


def _history(uri: str) -> dict[str, list[tuple[int, float]]]:
    """Every metric's (step, value) history of the one run in this store."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("shaping-benchmark")
    assert exp is not None, f"no experiment in {uri}"
    run = client.search_runs([exp.experiment_id])[0]
    return {key: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
            for key in run.data.metrics}


def frames_to_bar(evals: list[tuple[int, float]], bar: float) -> float:
    """The first evaluation's step at or above ``bar``; infinity when none is."""
    return next((float(step) for step, value in evals if value >= bar), math.inf)


def advances(stages: list[tuple[int, float]]) -> list[int]:
    """The steps where ``curriculum/stage`` went up."""
    out, last = [], 0.0
    for step, value in stages:
        if value > last:
            out.append(step)
            last = value
    return out


def median(values: list[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


def _fmt(frames: float, budget: int | None) -> str:
    return f"> {budget:,}" if math.isinf(frames) and budget else ("never" if math.isinf(frames) else f"{frames:,.0f}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipes", nargs="+", default=RECIPES)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--frames", type=int, default=None, help="budget.frames (default: the recipe's)")
    p.add_argument("--eval-every", type=int, default=5000)
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--bar", type=float, default=-110.0, help="mean eval return counted as solved")
    p.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 1) // 2), help="runs at once")
    p.add_argument("--work-dir", type=Path, default=None, help="run directories and MLflow stores (default: temp)")
    p.add_argument("--out", type=Path, default=None, help="append one JSON line per recipe here")
    p.add_argument("--override", nargs="+", default=[], metavar="KEY=VALUE",
                   help="applied to every run, e.g. algo.eps_decay_frames=5000 (a control for a recipe's change)")
    p.add_argument("--quick", action="store_true", help="1 seed, 60k frames, eval every 5k frames on 10 episodes")
    args = p.parse_args()
    if args.quick:
        args.seeds, args.frames, args.eval_every, args.eval_episodes = 1, args.frames or 60_000, 5000, 10
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="lrl-shaping-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LRL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    jobs = [(recipe, seed) for seed in seeds for recipe in args.recipes]
    running: dict[tuple[str, int], tuple[subprocess.Popen[bytes], float, Path]] = {}
    done: dict[tuple[str, int], dict[str, Any]] = {}
    pending = list(jobs)
    while pending or running:
        while pending and len(running) < args.jobs:
            recipe, seed = job = pending.pop(0)
            tag = f"{recipe.replace('/', '_')}-s{seed}"
            uri = f"sqlite:///{(work / tag).resolve()}.db"
            log = (work / f"{tag}.log").open("wb")
            proc = subprocess.Popen(_command(recipe, seed, args, work / tag, uri), stdout=log, stderr=log,
                                    env=env, cwd=work)
            running[job] = (proc, time.perf_counter(), Path(uri.removeprefix("sqlite:///")))
        time.sleep(2)
        for job, (proc, start, db) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[job]
            minutes = (time.perf_counter() - start) / 60
            if proc.returncode != 0:
                print(f"{job[0]} seed {job[1]}: exit {proc.returncode}, see {work}", file=sys.stderr)
                done[job] = {"frames_to_bar": math.inf, "final": math.nan, "best": math.nan, "minutes": minutes,
                             "advances": []}
                continue
            hist = _history(f"sqlite:///{db}")
            evals = hist.get("eval/return_mean", [])
            done[job] = {"frames_to_bar": frames_to_bar(evals, args.bar), "final": evals[-1][1] if evals else math.nan,
                         "best": max((v for _, v in evals), default=math.nan),
                         "minutes": minutes, "advances": advances(hist.get("curriculum/stage", [])),
                         "evals": evals}
            print(f"{job[0]} seed {job[1]}: to bar {_fmt(done[job]['frames_to_bar'], args.frames)}, final "
                  f"{done[job]['final']:.1f}, {minutes:.1f} min", file=sys.stderr, flush=True)

    budget = args.frames
    print(f"\noverrides {' '.join(args.override) or '-'}, bar {args.bar}, eval every {args.eval_every:,} frames on "
          f"{args.eval_episodes} episodes, seeds {seeds}\n")
    print("| recipe | frames to bar (median) | per seed | reached | final eval per seed | best eval per seed | "
          "stage advances | min/run |")
    print("|---|---|---|---|---|---|---|---|")
    for recipe in args.recipes:
        rows = [done[(recipe, s)] for s in seeds]
        to_bar = [r["frames_to_bar"] for r in rows]
        adv = "; ".join(",".join(f"{a:,}" for a in r["advances"]) for r in rows if r["advances"]) or "-"
        print(f"| {recipe} | {_fmt(median(to_bar), budget)} | {', '.join(_fmt(f, budget) for f in to_bar)} | "
              f"{sum(not math.isinf(f) for f in to_bar)}/{len(to_bar)} | "
              f"{', '.join(format(r['final'], '.1f') for r in rows)} | "
              f"{', '.join(format(r['best'], '.1f') for r in rows)} | {adv} | "
              f"{median([r['minutes'] for r in rows]):.1f} |")
        if args.out:
            with args.out.open("a") as f:
                f.write(json.dumps({"recipe": recipe, "overrides": args.override, "seeds": seeds, "bar": args.bar,
                                    "frames": budget,
                                    "eval_every": args.eval_every, "eval_episodes": args.eval_episodes,
                                    "runs": [{k: (None if isinstance(v, float) and math.isinf(v) else v)
                                              for k, v in r.items()} for r in rows]}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
