"""Compare recipe variants over seeds, in parallel: the learning check's protocol on a many-core machine.

Each (variant, seed) run is one worker process with one torch thread, trains the recipe with the variant's
overrides to its budget and scores the final policy exactly as the learning checks do
(``tests/learning/conftest.py::final_return``: 20 deterministic episodes seeded ``1000 + seed``). Variants are
``NAME=override,override`` (``base=`` for the recipe unchanged). Prints one Markdown row per variant and, with
``--out``, appends one JSON line per variant.

    python benchmarks/seed_sweep.py dqn/cartpole --seeds 5 --jobs 2 -v base= -v linlr=algo.lr_schedule=linear
    python benchmarks/seed_sweep.py dqn/cartpole -v double=algo.target=double_dqn --frames 100000 --out r.jsonl
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _one(recipe: str, seed: int, extra: list[str], work: str) -> tuple[float, float]:
    os.environ.update(OMP_NUM_THREADS="1", LRL_NUM_THREADS="1")
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{work}/mlflow-{os.getpid()}.db")
    os.chdir(work)
    sys.path.insert(0, str(ROOT))
    from tests.learning.conftest import final_return

    start = time.perf_counter()
    run_dir_tag = "-".join(x.replace("/", "_") for x in extra) or "base"
    os.makedirs(run_dir_tag[:100], exist_ok=True)
    os.chdir(run_dir_tag[:100])
    return final_return(recipe, seed, extra), time.perf_counter() - start


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe")
    p.add_argument("-v", "--variant", action="append", default=[], help="NAME=override,override (repeatable)")
    p.add_argument("--seeds", type=int, default=5, help="how many seeds (default 5)")
    p.add_argument("--first-seed", type=int, default=0, help="seeds first..first+N-1 (default 0: the checks' own)")
    p.add_argument("--frames", type=int, default=None, help="budget.frames for every variant")
    p.add_argument("--bar", type=float, default=None, help="return counted as solved (for the 'passed' column)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel worker processes")
    p.add_argument("--work-dir", default=None, help="run directories and MLflow stores (default: a temp dir)")
    p.add_argument("--out", type=Path, default=None, help="append one JSON line per variant here")
    args = p.parse_args()

    variants: dict[str, list[str]] = {}
    for v in args.variant or ["base="]:
        name, _, rest = v.partition("=")
        variants[name] = [x for x in rest.split(",") if x]
        if args.frames:
            variants[name].append(f"budget.frames={args.frames}")
    work = args.work_dir or tempfile.mkdtemp(prefix="lrl-sweep-")
    Path(work).mkdir(parents=True, exist_ok=True)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    jobs = [(name, seed) for seed in seeds for name in variants]
    # a fresh interpreter per run: nothing (RNG, threads, allocator) leaks from one run into the next
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn"), max_tasks_per_child=1) as pool:
        futures = {job: pool.submit(_one, args.recipe, job[1], variants[job[0]], work) for job in jobs}
        results = {job: f.result() for job, f in futures.items()}

    print("| variant | overrides | returns per seed | passed | median min/run |\n|---|---|---|---|---|")
    for name, extra in variants.items():
        rets = [results[(name, s)][0] for s in seeds]
        mins = sorted(results[(name, s)][1] / 60 for s in seeds)
        passed = "" if args.bar is None else f"{sum(r >= args.bar for r in rets)}/{len(rets)}"
        print(f"| {name} | `{' '.join(extra)}` | {', '.join(f'{r:.0f}' for r in rets)} | {passed} | "
              f"{mins[len(mins) // 2]:.1f} |")
        if args.out:
            with args.out.open("a") as f:
                f.write(json.dumps({"recipe": args.recipe, "variant": name, "extra": extra, "seeds": list(seeds),
                                    "returns": rets, "bar": args.bar, "minutes": mins}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
