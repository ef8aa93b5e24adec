"""The RLHF chain on the ``reverse`` task over seeds (docs/lm-rlhf.md): SFT → reward model → RL, and what RL did.

Per seed, one ``lrl train`` process at a time (one torch thread, its own MLflow sqlite store): ``lm-sft/reverse``,
``lm-reward/reverse`` on that SFT model, then each RL variant from the same SFT and reward model:

- ``ppo``: ``rlhf-ppo/reverse`` as shipped (adaptive β toward a KL target, PPO-ptx with λ = 1);
- ``ppo-noptx``: plain PPO, the same without the PPO-ptx term (``algo.ptx_coef=0``);
- ``ppo-beta0``: plain PPO with β = 0 (``algo.kl_coef=0 algo.kl_target=null``): nothing holds π^RL near π^SFT;
- ``grpo``: ``rlhf-ppo/reverse-grpo``.

Then every model is measured here, on the same ``--prompts`` held-out (test-split) prompts, one response each sampled
at temperature 1 (``lrl.lm.models.sample_responses``): the hidden true score (ceiling 1.0), the learned reward r̂
(read as lm-reward reads it), the KL to π^SFT (the mean over prompts of the summed log-ratio log π/π^SFT of the
sampled response tokens, eos included when it was sampled) and the pretraining NLL (mean per-token −log π on
``--prompts`` corpus texts, held out from training). The reward model's held-out pair accuracy is its run's last
``rm/accuracy``. The bar: π^RL closes ≥ 50 % of the SFT→ceiling gap, (RL − SFT) / (1 − SFT) ≥ 0.5. Prints one
Markdown row per (seed, model) and the chain's wall time; ``--out`` appends one JSON line per seed.

    OMP_NUM_THREADS=1 python benchmarks/lm_rlhf.py --seeds 0 1 2 --out benchmarks/results/lm_rlhf.jsonl
    python benchmarks/lm_rlhf.py --seeds 0 --variants ppo --work-dir /tmp/lm-rlhf    # the chain once
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
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "ppo": ("rlhf-ppo/reverse", []),
    "ppo-noptx": ("rlhf-ppo/reverse", ["algo.ptx_coef=0"]),
    "ppo-beta0": ("rlhf-ppo/reverse", ["algo.kl_coef=0", "algo.kl_target=null", "algo.ptx_coef=0"]),
    "grpo": ("rlhf-ppo/reverse-grpo", []),
}


def _train(recipe: str, overrides: list[str], run_dir: Path, env: dict[str, str]) -> tuple[float, str]:
    """One ``lrl train`` process; (wall seconds, its sqlite tracking URI)."""
    uri = f"sqlite:///{run_dir.resolve()}.db"
    cmd = [sys.executable, "-m", "lrl.cli", "train", recipe, *overrides, "checkpoint.every=0",
           "tracking.experiment=lm-rlhf-benchmark", "--run-dir", str(run_dir), "--tracking-uri", uri]
    start = time.perf_counter()
    with (run_dir.parent / f"{run_dir.name}.log").open("wb") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=log, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}: exit {proc.returncode}, see {run_dir.parent / run_dir.name}.log")
    return time.perf_counter() - start, uri


def _last_metric(uri: str, key: str) -> float | None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("lm-rlhf-benchmark")
    run = client.search_runs([exp.experiment_id])[0] if exp else None
    hist = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)) if run else []
    return hist[-1][1] if hist else None


def measure(policy_dir: Path, sft_dir: Path, rm_dir: Path, n: int, seed: int, max_new_tokens: int) -> dict[str, float]:
    """True score, r̂, KL to π^SFT and corpus NLL of the policy at ``policy_dir`` (see the module docstring)."""
    import torch

    from lrl.algos.lm_sft.module import token_nll
    from lrl.estimators.tokens import mask_tokens
    from lrl.lm.models import encode, load_causal_lm, load_reward_model, never_sampled, sample_responses
    from lrl.lm.task import get_task

    task = get_task("reverse")
    policy, tok = load_causal_lm(policy_dir)
    sft = load_causal_lm(sft_dir)[0]
    rm = load_reward_model(rm_dir)[0]
    for m in (policy, sft, rm):
        m.eval()
    prompts = task.prompts("test", n, 10_000 + seed)
    responses = [r[0] for r in sample_responses(policy, tok, prompts, 1, temperature=1.0,
                                                max_new_tokens=max_new_tokens, seed=20_000 + seed)]
    texts = [p + r for p, r in zip(prompts, responses, strict=True)]
    enc = encode(tok, texts, 16)
    ids, am = enc["input_ids"], enc["attention_mask"]
    never = never_sampled(tok)
    with torch.no_grad():
        reward = rm(input_ids=ids, attention_mask=am).logits[:, 0]
        logp = [torch.log_softmax(mask_tokens(m(input_ids=ids, attention_mask=am).logits[:, :-1], never), -1)
                .gather(-1, ids[:, 1:, None])[..., 0] for m in (policy, sft)]
        # the response's tokens: after the prompt, up to the eos, which counts only when it was sampled (a response
        # as long as max_new_tokens was cut before one)
        cols = torch.arange(ids.shape[1] - 1)[None]
        start = torch.tensor([len(p) for p in prompts])[:, None] - 1  # char tokens: predicted from column p-1 on
        length = torch.tensor([len(r) + (len(r) < max_new_tokens) for r in responses])[:, None]
        resp = (cols >= start) & (cols < start + length)
        kl = ((logp[0] - logp[1]) * resp).sum(-1)
        corpus = encode(tok, task.corpus(n, 30_000 + seed), 16)
        nll = token_nll(policy(**corpus).logits, corpus["input_ids"], corpus["attention_mask"])
    true = [task.score(p, r) for p, r in zip(prompts, responses, strict=True)]
    return {"true_score": sum(true) / n, "reward": reward.mean().item(), "kl": kl.mean().item(),
            "ptx_nll": nll.item(), "response_length": sum(map(len, responses)) / n}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--prompts", type=int, default=1000, help="held-out prompts (and corpus texts) per measurement")
    p.add_argument("--override", nargs="+", default=[], metavar="KEY=VALUE", help="applied to every RL run")
    p.add_argument("--work-dir", type=Path, default=None, help="run directories and MLflow stores (default: temp)")
    p.add_argument("--out", type=Path, default=None, help="append one JSON line per seed here")
    args = p.parse_args()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="lrl-lm-rlhf-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LRL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    import torch

    torch.set_num_threads(1)
    print("| seed | model | true score | gap closed | learned r̂ | KL to SFT | pretraining NLL | wall s |")
    print("|---|---|---|---|---|---|---|---|", flush=True)
    for seed in args.seeds:
        d = work / f"s{seed}"
        d.mkdir(exist_ok=True)
        t_sft, _ = _train("lm-sft/reverse", [f"seed={seed}"], d / "sft", env)
        sft_model = d / "sft" / "model"
        t_rm, rm_uri = _train("lm-reward/reverse", [f"seed={seed}", f"data.policy={sft_model}"], d / "rm", env)
        rm_model = d / "rm" / "model"
        row: dict[str, Any] = {"seed": seed, "prompts": args.prompts, "sft_wall_s": round(t_sft, 1),
                               "rm_wall_s": round(t_rm, 1), "rm_accuracy": _last_metric(rm_uri, "rm/accuracy"),
                               "overrides": args.override, "models": {}}
        sft = measure(sft_model, sft_model, rm_model, args.prompts, seed, 6)
        row["models"]["sft"] = sft
        print(f"| {seed} | π^SFT (RM held-out accuracy {row['rm_accuracy']:.3f}) | {sft['true_score']:.3f} | - | "
              f"{sft['reward']:.2f} | {sft['kl']:.2f} | {sft['ptx_nll']:.3f} | {t_sft:.0f} + {t_rm:.0f} |",
              flush=True)
        for name in args.variants:
            recipe, extra = VARIANTS[name]
            overrides = [f"seed={seed}", f"data.policy={sft_model}", f"algo.reward_path={rm_model}", *extra,
                         *args.override]
            t, uri = _train(recipe, overrides, d / name, env)
            m = measure(d / name / "model", sft_model, rm_model, args.prompts, seed, 6)
            m["wall_s"], m["beta_final"] = round(t, 1), _last_metric(uri, "rlhf/beta")
            m["gap_closed"] = (m["true_score"] - sft["true_score"]) / (1.0 - sft["true_score"])
            row["models"][name] = m
            print(f"| {seed} | {name} | {m['true_score']:.3f} | {m['gap_closed']:+.0%} | {m['reward']:.2f} | "
                  f"{m['kl']:.2f} | {m['ptx_nll']:.3f} | {t:.0f} |", flush=True)
        if args.out:
            with args.out.open("a") as f:
                f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
