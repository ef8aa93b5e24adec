"""Measure the first two RLHF stages at the recipes' size (docs/lm-rlhf.md): wall time of ``lm-sft/reverse`` and
``lm-reward/reverse``, the SFT policy's hidden true score on held-out (test) prompts at temperature 1, and the
reward model's held-out pair accuracy against the true score.

    OMP_NUM_THREADS=1 LRL_NUM_THREADS=1 python benchmarks/lm_stages.py --out /tmp/lm-stages \
        [--seed 0] [--sft K=V ...] [--rm K=V ...]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sft", nargs="*", default=[], help="extra lm-sft overrides")
    parser.add_argument("--rm", nargs="*", default=[], help="extra lm-reward overrides")
    args = parser.parse_args()

    import mlflow

    from lrl.launch import train
    from lrl.lm.models import load_causal_lm, true_score
    from lrl.lm.task import get_task

    out = Path(args.out)
    t0, c0 = time.perf_counter(), time.process_time()
    train("lm-sft/reverse", [f"seed={args.seed}", *args.sft], run_dir=out / "sft")
    t_sft, c_sft = time.perf_counter() - t0, time.process_time() - c0
    model, tok = load_causal_lm(out / "sft" / "model")
    task = get_task("reverse")
    sft_test = true_score(model, tok, task, split="test", n=2000, seed=123)
    t0, c0 = time.perf_counter(), time.process_time()
    res = train("lm-reward/reverse", [f"seed={args.seed}", f"data.policy={out / 'sft' / 'model'}", *args.rm],
                run_dir=out / "rm")
    t_rm, c_rm = time.perf_counter() - t0, time.process_time() - c0
    run_id = getattr(res, "mlflow_run_id", None)
    hist = mlflow.MlflowClient().get_metric_history(run_id, "rm/accuracy") if run_id else []
    print(json.dumps({"seed": args.seed, "sft_wall_s": round(t_sft, 1), "sft_cpu_s": round(c_sft, 1),
                      "sft_true_score_test": round(sft_test, 4),
                      "sft_ceiling": task.ceiling, "rm_wall_s": round(t_rm, 1), "rm_cpu_s": round(c_rm, 1),  # type: ignore[attr-defined]
                      "rm_accuracy_heldout": [(m.step, round(m.value, 4)) for m in hist]}))


if __name__ == "__main__":
    main()
