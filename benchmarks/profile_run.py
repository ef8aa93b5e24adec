"""Where the time of one ``lrl train`` run goes, by part (issue 15: "profile, then cut").

Runs the recipe in this process under ``cProfile`` (one torch thread unless ``LRL_NUM_THREADS`` says otherwise) and
prints the wall-clock of the whole process split into start-up (imports, recipe, env probe, MLflow run), the
Lightning ``fit`` and what comes after it (final checkpoint, model export, artifacts), and ``fit`` into its parts:
collection (env steps vs policy forward vs the rest of the collector), GAE / ``process_rollout``, minibatch
indexing, loss forward, backward, optimiser step, gradient clipping, metric recording, evaluation, checkpoints;
"Lightning loop and glue" is ``fit`` minus all of them. The profiler itself inflates Python-heavy parts (the
process runs ~1.5× slower under it), so the shares are what to read, not the seconds.

    python benchmarks/profile_run.py ppo/cartpole                       # the recipe as shipped
    python benchmarks/profile_run.py ppo/cartpole budget.frames=50000   # any override
    python benchmarks/profile_run.py ppo/cartpole --json-out prof.json  # also write the table
    python benchmarks/profile_run.py sac/pendulum --pstats sac.pstats  # and cProfile's raw statistics
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import tempfile
import time

START = time.perf_counter()

# (label, file suffix, function name): cumulative seconds; an indented label is a part of the one above it
PARTS: list[tuple[str, str, str]] = [
    ("collection (whole)", "lrl/data/collector.py", "rollout"),
    ("  env step (gymnasium vector env)", "gymnasium/vector/sync_vector_env.py", "step"),
    ("  env reset", "gymnasium/vector/sync_vector_env.py", "reset"),
    ("  policy forward (acting)", "lrl/networks/policy.py", "forward"),
    ("replay buffer add (TorchRL ReplayBuffer.extend)", "torchrl/data/replay_buffers/replay_buffers/base.py",
     "extend"),
    ("process_rollout (values, GAE)", "", "process_rollout"),
    ("loss forward", "", "_compute_loss"),
    ("backward", "torch/_tensor.py", "backward"),
    ("optimiser step (Adam's arithmetic)", "torch/optim/adam.py", "step"),
    ("zero_grad", "torch/optim/optimizer.py", "zero_grad"),
    ("gradient clipping", "lightning/pytorch/core/module.py", "clip_gradients"),
    ("metric recording and flushing", "lrl/algos/base.py", "record"),
    ("  flush to the logger", "lrl/algos/base.py", "flush_metrics"),
    ("evaluation", "lrl/callbacks/evaluation.py", "run"),
    ("checkpoints", "lrl/callbacks/checkpoint.py", "save"),
    ("progress line", "lrl/callbacks/progress.py", "on_train_batch_end"),
]
# on-policy rollouts and the replay DataModule: next_batch less collection is minibatch indexing / replay sampling
NEXT_BATCH = [("lrl/data/onpolicy.py", "next_batch"), ("lrl/data/replay.py", "next_batch")]
COLLECT = [("lrl/data/onpolicy.py", "_collect"), ("lrl/data/replay.py", "_collect")]
CLOSURE = ("lightning/pytorch/plugins/precision/precision.py", "_wrap_closure")  # runs inside Adam.step
FIT = ("lightning/pytorch/trainer/trainer.py", "fit")


def cumulative(stats: pstats.Stats, suffix: str, name: str) -> float:
    """Cumulative seconds of the functions called ``name`` in files ending with ``suffix`` (summed over matches)."""
    total = 0.0
    for (filename, _line, func), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if func == name and filename.replace(os.sep, "/").endswith(suffix):
            total += ct
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipe")
    ap.add_argument("overrides", nargs="*")
    ap.add_argument("--json-out")
    ap.add_argument("--pstats", help="also write cProfile's raw statistics here (read with pstats / snakeviz)")
    args = ap.parse_args()
    os.environ.setdefault("LRL_NUM_THREADS", "1")
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    work = tempfile.mkdtemp(prefix="lrl-profile-")
    os.chdir(work)
    prof = cProfile.Profile()
    prof.enable()
    from lrl.launch import train

    train(args.recipe, list(args.overrides), run_dir=os.path.join(work, "run"))
    prof.disable()
    wall = time.perf_counter() - START
    stats = pstats.Stats(prof)
    if args.pstats:
        stats.dump_stats(args.pstats)
    fit = cumulative(stats, *FIT)
    rows: list[tuple[str, float]] = [("whole process (under the profiler)", wall)]
    inside = 0.0
    parts: list[tuple[str, float]] = []
    for label, suffix, name in PARTS:
        t = cumulative(stats, suffix, name)
        if name == "step" and suffix.endswith("adam.py"):  # Lightning runs forward and backward inside it
            t -= cumulative(stats, *CLOSURE)
        parts.append((label, t))
        if not label.startswith("  "):
            inside += t
    indexing = sum(cumulative(stats, *f) for f in NEXT_BATCH) - sum(cumulative(stats, *f) for f in COLLECT)
    parts.append(("minibatch indexing / replay sampling (next_batch less collection)", indexing))
    inside += indexing
    rows += [("start-up and after fit (imports, probe, MLflow, export)", wall - fit), ("Lightning fit", fit)]
    rows += [("  " + label, t) for label, t in parts]
    rows.append(("  Lightning loop and glue (fit less the parts)", fit - inside))
    print(f"{args.recipe} {' '.join(args.overrides)}  (threads {os.environ['LRL_NUM_THREADS']}, "
          f"load {os.getloadavg()[0]:.2f})")
    print(f"{'part':<68} {'s':>8} {'share':>7}")
    for label, t in rows:
        print(f"{label:<68} {t:8.2f} {t / wall:7.1%}")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"recipe": args.recipe, "overrides": args.overrides, "load": os.getloadavg()[0],
                       "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
