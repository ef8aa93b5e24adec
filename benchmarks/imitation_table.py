"""BC vs DAgger: the learner's return as a fraction of the expert's, against the number of expert labels.

The compounding-error claim (behaviour cloning's cost grows as O(εT²), DAgger's as O(εT); Ross et al. 2011, Yin
§2.1) predicts that, for the same number of expert labels, DAgger's learner gets closer to the expert than BC's,
and most visibly at small label budgets. This script measures it with lrl's own recipes:

- the expert: an lrl run (trained here with the task's expert recipe when ``--expert`` names no existing run);
- BC: ``bc/<task>`` on the first N transitions of a Minari dataset recorded from the expert (``lrl demos``);
- DAgger: ``dagger/<task>`` with an expert-label budget of N (round 0 is the expert's own episodes);

every (method, N, seed) run is evaluated like ``lrl eval`` (20 deterministic episodes, seeds 1000+seed) and
divided by the expert's mean return on the same evaluation. Runs go to a process pool (one thread each).

    python benchmarks/imitation_table.py --task cartpole                 # 5 budgets x 5 seeds x 2 methods
    python benchmarks/imitation_table.py --task cartpole --quick         # 1 seed, 2 budgets: a smoke check
    python benchmarks/imitation_table.py --table out/imitation.jsonl     # print the table of an earlier run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# task -> (expert recipe, bc recipe, dagger recipe, overrides that fix the number of labels N)
TASKS: dict[str, dict[str, Any]] = {
    "cartpole": {"expert": "ppo/cartpole", "bc": "bc/cartpole", "dagger": "dagger/cartpole", "episodes": 12,
                 "labels": (50, 100, 250, 1000, 5000), "steps": 2000},
    "inverted-double-pendulum": {"expert": "sac/inverted-double-pendulum", "bc": "bc/inverted-double-pendulum",
                                 "dagger": "dagger/inverted-double-pendulum", "episodes": 6,
                                 "labels": (25, 50, 100, 250, 1000), "steps": 2000},
}
ROUNDS = 5  # DAgger: round 0 (the expert) and four learner rounds share the label budget equally


def _env(out: Path) -> None:
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{out / 'mlflow.db'}")
    os.environ["MINARI_DATASETS_PATH"] = str(out / "minari")
    os.environ["LRL_NUM_THREADS"] = "1"


def _quiet() -> None:
    import logging
    import warnings

    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")


def expert_run(task: str, out: Path, expert: str | None) -> Path:
    from lrl.launch import train

    if expert and Path(expert).exists():
        return Path(expert)
    run_dir = out / f"expert-{task}"
    if not (run_dir / "checkpoints" / "last.ckpt").exists():
        train(TASKS[task]["expert"], ["eval.every=0", "checkpoint.every=0"], run_dir=run_dir)
    return run_dir


def one(job: dict[str, Any]) -> dict[str, Any]:
    """Train one (method, labels, seed) and evaluate it; runs in a worker process."""
    _env(Path(job["out"]))
    name = f"{job['task']}-{job['method']}-{job['labels']}-{job['seed']}"
    (Path(job["out"]) / "mlflow").mkdir(exist_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(job['out']) / 'mlflow' / name}.db"  # one store per
    _quiet()  # process: sqlite stores created concurrently race on their schema
    from lrl.launch import RunResult, evaluate_run, train

    start = time.perf_counter()
    run_dir = Path(job["out"]) / "runs" / name
    result = train(job["recipe"], [f"seed={job['seed']}", "eval.every=0", "eval.final=false", "checkpoint.every=0",
                                   *job["overrides"]], run_dir=run_dir)
    assert isinstance(result, RunResult)
    ret = evaluate_run(run_dir, episodes=20, seed=1000 + job["seed"])["return_mean"]
    return {**{k: job[k] for k in ("task", "method", "labels", "seed")}, "return": ret,
            "fraction": ret / job["expert_return"], "expert_return": job["expert_return"],
            "seconds": time.perf_counter() - start}


def jobs(task: str, out: Path, expert: Path, dataset: str, expert_return: float, labels: list[int],
         seeds: list[int]) -> list[dict[str, Any]]:
    """Both methods see the same number of labels, minibatch size and gradient steps; DAgger spends its labels in
    ``ROUNDS`` equal rounds (one expert episode-set, then the learner's), ``steps / ROUNDS`` gradient steps apart."""
    spec = TASKS[task]
    todo = []
    for n in labels:
        batch, steps = max(1, min(256, n // ROUNDS)), spec["steps"]
        same = [f"data.batch_size={batch}", f"budget.steps={steps}"]
        for seed in seeds:
            common = {"task": task, "labels": n, "seed": seed, "out": str(out), "expert_return": expert_return}
            todo.append({**common, "method": "bc", "recipe": spec["bc"],
                         "overrides": [f"data.dataset={dataset}", f"data.max_samples={n}", *same]})
            todo.append({**common, "method": "dagger", "recipe": spec["dagger"],
                         "overrides": [f"data.expert={expert}", f"data.label_budget={n}", *same,
                                       f"data.labels_per_round={n // ROUNDS}", "data.save_rounds=false",
                                       f"data.steps_per_round={steps // ROUNDS}", "data.episodes_per_round=2"]})
    return todo


def table(rows: list[dict[str, Any]]) -> str:
    tasks = sorted({r["task"] for r in rows})
    lines = []
    for task in tasks:
        mine = [r for r in rows if r["task"] == task]
        expert = mine[0]["expert_return"]
        lines += [f"**{task}** (expert return {expert:.1f}; fraction of it, mean ± std over seeds; seeds ≥ 0.95)", "",
                  "| expert labels | BC | DAgger |", "|---|---|---|"]
        for n in sorted({r["labels"] for r in mine}):
            cells = []
            for method in ("bc", "dagger"):
                fr = [r["fraction"] for r in mine if r["labels"] == n and r["method"] == method]
                if not fr:
                    cells.append("—")
                    continue
                sd = statistics.pstdev(fr) if len(fr) > 1 else 0.0
                ok = sum(f >= 0.95 for f in fr)
                cells.append(f"{statistics.mean(fr):.2f} ± {sd:.2f} ({ok}/{len(fr)})")
            lines.append(f"| {n:,} | {cells[0]} | {cells[1]} |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=sorted(TASKS), action="append", help="default: all tasks")
    parser.add_argument("--labels", type=int, nargs="+", default=None, help="default: the task's own five")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--expert", action="append", default=[], metavar="TASK=RUN_DIR",
                        help="an existing expert run for a task (else one is trained with the task's expert recipe)")
    parser.add_argument("--out", type=Path, default=None, help="working directory (default: a temporary one)")
    parser.add_argument("--quick", action="store_true", help="1 seed, the smallest and largest budgets")
    parser.add_argument("--table", type=Path, default=None, help="only print the table of this JSONL file")
    args = parser.parse_args()
    if args.table:
        print(table([json.loads(line) for line in args.table.read_text().splitlines() if line.strip()]))
        return 0
    out = (args.out or Path(tempfile.mkdtemp(prefix="lrl-imitation-"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    _env(out)
    _quiet()
    args.expert = dict(e.split("=", 1) for e in args.expert)
    seeds = list(range(args.first_seed, args.first_seed + (1 if args.quick else args.seeds)))
    from lrl.demos import record
    from lrl.launch import evaluate_run

    todo = []
    for task in args.task or sorted(TASKS):
        expert = expert_run(task, out, args.expert.get(task))
        expert_return = evaluate_run(expert, episodes=20, seed=1000)["return_mean"]
        dataset = f"bench/{task}-expert-v0"
        if not (out / "minari" / "bench" / f"{task}-expert-v0").exists():
            record(str(expert), TASKS[task]["episodes"], dataset, seed=10_000)
        print(f"{task}: expert {expert} returns {expert_return:.1f}; demos {dataset}", flush=True)
        labels = list(args.labels or TASKS[task]["labels"])
        todo += jobs(task, out, expert, dataset, expert_return, [min(labels), max(labels)] if args.quick else labels,
                     seeds)
    results = out / "imitation.jsonl"
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool, results.open("a") as f:
        for row in pool.map(one, todo):
            f.write(json.dumps(row) + "\n")
            f.flush()
            print(f"{row['task']:<12} {row['method']:<7} {row['labels']:>6} seed {row['seed']}: "
                  f"{row['return']:.1f} ({row['fraction']:.2f}) {row['seconds']:.0f}s", flush=True)
    print(table([json.loads(line) for line in results.read_text().splitlines() if line.strip()]))
    print(f"\n(raw results: {results})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
