"""True return vs number of synthetic labels: the rlhf recipes over label budgets, query selection and seeds, next to
the same algorithm on the true reward (docs/rlhf.md).

Tasks: ``cartpole`` (rlhf/cartpole vs ppo/cartpole) and ``inverted-pendulum`` (rlhf/inverted-pendulum vs
ppo/inverted-pendulum): the rlhf recipe with its ``rlhf:`` section is the same PPO as the baseline recipe. Each
(task, condition, seed) is one ``lrl train`` process (one torch thread, its own MLflow sqlite store), evaluated every
``--eval-every`` frames (deterministic policy, the env's own reward). Reported per condition: the median over seeds
of the final evaluation, of the best evaluation, the per-seed finals, the final as a fraction of the baseline's
median final (the issue's bar: >= 0.9 with <= 1000 labels) and minutes. Prints one Markdown row per condition;
``--out`` appends one JSON line per condition (benchmarks/results/rlhf.jsonl).

    python benchmarks/rlhf.py --quick                                   # cartpole, 200 labels + baseline, 1 seed
    python benchmarks/rlhf.py --seeds 5 --jobs 16 --out benchmarks/results/rlhf.jsonl   # the full table
    python benchmarks/rlhf.py --tasks inverted-pendulum --labels 100 --selection disagreement --seeds 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TASKS = {"cartpole": ("rlhf/cartpole", "ppo/cartpole"),
         "inverted-pendulum": ("rlhf/inverted-pendulum", "ppo/inverted-pendulum")}
LABELS = [50, 100, 200, 500, 1000]
EXPERIMENT = "rlhf-benchmark"


def _conditions(args: argparse.Namespace) -> list[tuple[str, str, list[str]]]:
    """(task, condition name, recipe + overrides) for every run of the table, baseline first."""
    out = []
    for task in args.tasks:
        rlhf, base = TASKS[task]
        if not args.no_baseline:
            out.append((task, "true reward", [base]))
        for sel in args.selection:
            for n in args.labels:
                out.append((task, f"{n} labels, {sel}", [rlhf, f"rlhf.labels={n}", f"rlhf.selection={sel}"]))
    return out


def _command(spec: list[str], seed: int, args: argparse.Namespace, run_dir: Path, uri: str) -> list[str]:
    overrides = [f"seed={seed}", f"eval.every={args.eval_every}", f"eval.episodes={args.eval_episodes}",
                 "checkpoint.every=0", f"tracking.experiment={EXPERIMENT}"]
    if args.frames:
        overrides.append(f"budget.frames={args.frames}")
    return [sys.executable, "-m", "lrl.cli", "train", spec[0], *spec[1:], *overrides, *args.override,
            "--run-dir", str(run_dir), "--tracking-uri", uri]


def _history(uri: str) -> dict[str, list[tuple[int, float]]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    assert exp is not None, f"no experiment in {uri}"
    run = client.search_runs([exp.experiment_id])[0]
    return {key: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
            for key in run.data.metrics}


def median(values: list[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--labels", nargs="+", type=int, default=LABELS)
    p.add_argument("--selection", nargs="+", default=["random", "disagreement"], choices=["random", "disagreement"])
    p.add_argument("--no-baseline", action="store_true", help="skip the true-reward runs")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--frames", type=int, default=None, help="budget.frames (default: each recipe's)")
    p.add_argument("--eval-every", type=int, default=10000)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 1) // 2), help="runs at once")
    p.add_argument("--work-dir", type=Path, default=None, help="run directories and MLflow stores (default: temp)")
    p.add_argument("--out", type=Path, default=None, help="append one JSON line per condition here")
    p.add_argument("--override", nargs="+", default=[], metavar="KEY=VALUE", help="applied to every run")
    p.add_argument("--quick", action="store_true", help="cartpole, 200 random labels and the baseline, 1 seed")
    args = p.parse_args()
    if args.quick:
        args.tasks, args.labels, args.selection, args.seeds = ["cartpole"], [200], ["random"], 1
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="lrl-rlhf-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LRL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    conditions = _conditions(args)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    pending = [(c, s) for s in seeds for c in range(len(conditions))]
    running: dict[tuple[int, int], tuple[subprocess.Popen[bytes], float, str]] = {}
    done: dict[tuple[int, int], dict[str, Any]] = {}
    while pending or running:
        while pending and len(running) < args.jobs:
            c, seed = job = pending.pop(0)
            task, name, spec = conditions[c]
            tag = f"{task}-{name.replace(' ', '').replace(',', '-')}-s{seed}"
            uri = f"sqlite:///{(work / tag).resolve()}.db"
            log = (work / f"{tag}.log").open("wb")
            proc = subprocess.Popen(_command(spec, seed, args, work / tag, uri), stdout=log, stderr=log, env=env,
                                    cwd=work)
            running[job] = (proc, time.perf_counter(), uri)
        time.sleep(2)
        for job, (proc, start, uri) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[job]
            minutes = (time.perf_counter() - start) / 60
            if proc.returncode != 0:
                print(f"{conditions[job[0]][:2]} seed {job[1]} failed (exit {proc.returncode}); see {work}",
                      file=sys.stderr)
                done[job] = {"failed": True, "minutes": minutes}
                continue
            hist = _history(uri)
            evals = hist.get("eval/return_mean", [])
            done[job] = {"final": evals[-1][1] if evals else float("nan"),
                         "best": max(v for _, v in evals) if evals else float("nan"),
                         "curve": evals, "labels": hist.get("rm/labels", [(0, 0.0)])[-1][1],
                         "true_corr": hist.get("rm/true_corr", [(0, float("nan"))])[-1][1], "minutes": minutes}
    print("| task | condition | final (median) | best (median) | finals per seed | vs true reward | labels used | "
          "minutes |")
    print("|---|---|---|---|---|---|---|---|")
    baseline: dict[str, float] = {}
    for c, (task, name, spec) in enumerate(conditions):
        runs = [done[(c, s)] for s in seeds if not done[(c, s)].get("failed")]
        finals = [r["final"] for r in runs]
        row: dict[str, Any] = {"task": task, "condition": name, "recipe": spec[0],
                               "overrides": spec[1:] + args.override,
                               "seeds": seeds, "failed": len(seeds) - len(runs), "finals": finals,
                               "bests": [r["best"] for r in runs], "curves": [r["curve"] for r in runs],
                               "minutes": [round(r["minutes"], 2) for r in runs]}
        if finals:
            row["final_median"], row["best_median"] = median(finals), median(row["bests"])
            if name == "true reward":
                baseline[task] = row["final_median"]
            else:
                row["labels_used"] = [r["labels"] for r in runs]
                row["true_corr"] = [r["true_corr"] for r in runs]
            if task in baseline and baseline[task] > 0:
                row["vs_true_reward"] = row["final_median"] / baseline[task]
        frac = f"{row['vs_true_reward']:.2f}" if "vs_true_reward" in row else "-"
        print(f"| {task} | {name} | {row.get('final_median', float('nan')):.1f} | "
              f"{row.get('best_median', float('nan')):.1f} | {', '.join(f'{f:.0f}' for f in finals)} | {frac} | "
              f"{median(row['labels_used']) if row.get('labels_used') else '-'} | "
              f"{median(row['minutes']) if row['minutes'] else float('nan'):.1f} |")
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            with args.out.open("a") as f:
                f.write(json.dumps(row) + "\n")
    return 0 if all(not r.get("failed") for r in done.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
