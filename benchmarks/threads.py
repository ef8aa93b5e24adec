"""Torch threads per lrl process, idle and under load: wall-clock of PPO, DQN and SAC at 1 and 2 threads.

Each cell is one ``lrl train`` process with ``LRL_NUM_THREADS`` set, on a shortened budget, with evaluation,
checkpoints, videos and model export off (the training loop alone). "loaded" runs it next to one competing
process that keeps one core busy with single-threaded float32 matrix products (another training run, a test
worker, a neighbour on a shared node). Cells are taken in alternating order, ``--reps`` times; the table shows the
median wall-clock per cell and, per algorithm and condition, each thread count's time relative to the best one.

    python benchmarks/threads.py                    # 3 reps (about 15 minutes on 2 cores)
    python benchmarks/threads.py --reps 1 --out benchmarks/results/threads.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENTRIES = {  # recipe and the overrides that shorten it to a representative slice of its training loop
    "ppo/cartpole": ["budget.frames=40000"],
    "dqn/cartpole": ["budget.frames=12000"],
    "sac/pendulum": ["budget.frames=1500"],
}
QUIET = ["eval.every=0", "eval.final=false", "eval.video=false", "checkpoint.every=0", "checkpoint.every_minutes=0",
         "tracking.log_model=false"]
HOG = ("import torch\ntorch.set_num_threads(1)\na = torch.randn(512, 512)\n"
       "while True:\n    a = torch.tanh(a @ a / 512)\n")


def one_run(recipe: str, threads: int, work: Path, tag: str) -> float:
    env = {**os.environ, "LRL_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "lrl.cli", "train", recipe, *ENTRIES[recipe], *QUIET,
                           "--run-dir", str(work / tag), "--tracking-uri", f"sqlite:///{work / 'mlflow.db'}"],
                          capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{recipe} threads={threads}: {proc.stderr[-1500:]}")
    return wall


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--recipes", nargs="+", default=list(ENTRIES), choices=list(ENTRIES))
    p.add_argument("--out", type=Path, default=None, help="append one JSON line per cell")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lrl-threads-"))
    times: dict[tuple[str, str, int], list[float]] = {}
    n = 0
    for rep in range(args.reps):
        for condition in ("idle", "loaded"):
            hog = subprocess.Popen([sys.executable, "-c", HOG]) if condition == "loaded" else None
            try:
                time.sleep(1.0 if hog else 0.0)
                for recipe in args.recipes:
                    order = args.threads if rep % 2 == 0 else list(reversed(args.threads))
                    for threads in order:
                        n += 1
                        wall = one_run(recipe, threads, work, f"run{n}")
                        times.setdefault((recipe, condition, threads), []).append(wall)
                        load = os.getloadavg()[0]
                        print(f"rep {rep} {condition:6} {recipe:13} threads={threads}: {wall:6.1f} s "
                              f"(load1 {load:.1f})", file=sys.stderr, flush=True)
            finally:
                if hog is not None:
                    hog.kill()
                    hog.wait()
    print(f"\n{os.cpu_count()} cores, {args.reps} rep(s), median wall-clock in s (relative to the best thread count "
          "of the row)\n")
    print("| recipe (budget) | condition | " + " | ".join(f"{t} thread{'s' if t > 1 else ''}" for t in args.threads)
          + " |")
    print("|---|---|" + "---|" * len(args.threads))
    for recipe in args.recipes:
        for condition in ("idle", "loaded"):
            med = {t: statistics.median(times[(recipe, condition, t)]) for t in args.threads}
            best = min(med.values())
            cells = " | ".join(f"{med[t]:.1f} ({med[t] / best:.2f}×)" for t in args.threads)
            print(f"| `{recipe}` ({ENTRIES[recipe][0].split('=')[1]} frames) | {condition} | {cells} |")
            if args.out:
                with args.out.open("a") as f:
                    for t in args.threads:
                        f.write(json.dumps({"recipe": recipe, "condition": condition, "threads": t,
                                            "walls": times[(recipe, condition, t)], "cores": os.cpu_count()}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
