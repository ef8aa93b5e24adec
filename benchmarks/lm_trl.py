"""The TRL half of the LM comparison (issue #14; the lrl half and the export are ``lm_compare.py``).

Runs in TRL's own virtual environment (``benchmarks/requirements-trl.txt``; ``ppo`` in the TRL 1.12 one,
``benchmarks/requirements-trl-ppo.txt``) with ``PYTHONPATH`` at the lrl tree for ``lm_common`` (which needs only
torch, transformers and lrl's pure-Python task / model-loading code). Everything else comes from the export
directory ``lm_compare.py export`` wrote: the SFT model, lrl's reward model, the preference data, the prompts and
the TRL keyword arguments mapped from lrl's resolved recipes (``settings.json``).

Stages::

    reward   trl.RewardTrainer from OUT/sft on the exported preference pairs (all C(K,2) pairs of each train prompt,
             chosen = ranked higher by lrl's noisy annotator) -> held-out pair accuracy, wall time
    grpo     trl.GRPOTrainer from OUT/sft on the exported prompt pool, reward = lrl's reward model OUT/rm read as lrl
             reads it (prompt + response + eos) -> true score and KL to the SFT model on the held-out prompts
    ppo      trl.experimental.ppo.PPOTrainer (TRL 1.12) from OUT/sft, value model and reward model from OUT/rm

Clocks as ``lm_compare.py``: heavy imports first; ``train_s`` = trainer construction (model loading, dataset
tokenisation) + ``train()``; ``fit_s`` = ``train()`` alone. Results are appended to
``benchmarks/results/lm_trl.jsonl``.

Usage::

    export OMP_NUM_THREADS=1 PYTHONPATH=/path/to/lrl
    /work/venvs/trl/bin/python benchmarks/lm_trl.py reward --out /tmp/lmbench
    /work/venvs/trl/bin/python benchmarks/lm_trl.py grpo --out /tmp/lmbench
    /work/venvs/trl-ppo/bin/python benchmarks/lm_trl.py ppo --out /tmp/lmbench
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from itertools import combinations
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

from lm_common import (  # noqa: E402
    RewardModelScorer,
    append_result,
    machine,
    policy_eval,
    read_jsonl,
    rm_accuracy,
)


def _threads() -> None:
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))


def _versions() -> dict[str, str]:
    import transformers
    import trl

    return {"trl": trl.__version__, "transformers": transformers.__version__}


def preference_pairs(rows: list[dict[str, Any]], which: str) -> list[dict[str, str]]:
    """(prompt, chosen, rejected) rows: all C(K,2) pairs of each prompt, or its first two responses; chosen = the
    response lrl's annotator gave the higher (noisy) utility."""
    out = []
    for r in rows:
        k = len(r["responses"]) if which == "all" else 2
        for i, j in combinations(range(k), 2):
            hi, lo = (i, j) if r["utility"][i] > r["utility"][j] else (j, i)
            out.append({"prompt": r["prompt"], "chosen": r["responses"][hi], "rejected": r["responses"][lo]})
    return out


def _load_tokenizer(path: Path) -> Any:
    from lrl.lm.models import load_tokenizer

    return load_tokenizer(path)


def stage_reward(out: Path, s: dict[str, Any], results: Path) -> None:
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    cfg = s["reward_trl"]
    pairs = preference_pairs(read_jsonl(out / "prefs-train.jsonl"), cfg["pairs"])
    run_dir = out / "runs" / "trl-reward"
    shutil.rmtree(run_dir, ignore_errors=True)
    load = machine()
    t0 = time.perf_counter()
    tok = _load_tokenizer(out / "sft")
    model = AutoModelForSequenceClassification.from_pretrained(str(out / "sft"), num_labels=1, local_files_only=True)
    model.config.pad_token_id = tok.pad_token_id
    args = RewardConfig(output_dir=str(run_dir), **cfg["args"])
    trainer = RewardTrainer(model=model, args=args, processing_class=tok, train_dataset=Dataset.from_list(pairs))
    t1 = time.perf_counter()
    trainer.train()
    t2 = time.perf_counter()
    trainer.save_model(str(run_dir / "model"))
    tok.save_pretrained(str(run_dir / "model"))
    acc = rm_accuracy(run_dir / "model", read_jsonl(out / "prefs-test.jsonl"), cfg["args"]["max_length"])
    append_result(results, {"framework": "trl", "stage": "reward", "seed": s["config"]["seed"],
                            "steps": trainer.state.global_step, "pairs": len(pairs), "train_s": t2 - t0,
                            "fit_s": t2 - t1, **acc, **load, **_versions(),
                            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})


def stage_grpo(out: Path, s: dict[str, Any], results: Path) -> None:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    if "grpo_trl" not in s:
        raise SystemExit(f"no GRPO settings in the export: {s.get('grpo_error')}")
    cfg = s["grpo_trl"]
    max_length = s["reward_recipe"]["data"]["max_length"]
    prompts = read_jsonl(out / "prompts-train-grpo.jsonl")
    run_dir = out / "runs" / "trl-grpo"
    shutil.rmtree(run_dir, ignore_errors=True)
    load = machine()
    t0 = time.perf_counter()
    tok = _load_tokenizer(out / "sft")
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(str(out / "sft"), local_files_only=True)
    reward = RewardModelScorer(out / "rm", max_length)
    args = GRPOConfig(output_dir=str(run_dir), **cfg["args"])
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args, processing_class=tok,
                          train_dataset=Dataset.from_list(prompts))
    t1 = time.perf_counter()
    trainer.train()
    t2 = time.perf_counter()
    trainer.save_model(str(run_dir / "model"))
    tok.padding_side = "right"
    tok.save_pretrained(str(run_dir / "model"))
    ev = _evaluate(run_dir / "model", out, s, cfg["args"]["max_completion_length"])
    append_result(results, {"framework": "trl", "stage": "grpo", "seed": s["config"]["seed"],
                            "steps": trainer.state.global_step, "train_s": t2 - t0, "fit_s": t2 - t1, **ev, **load,
                            **_versions(), "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})


def _evaluate(policy: Path, out: Path, s: dict[str, Any], max_new_tokens: int) -> dict[str, float]:
    c = s["config"]
    prompts = [r["prompt"] for r in read_jsonl(out / "prompts-test.jsonl")]
    return policy_eval(policy, out / "sft", c["task"], prompts, temperature=c["eval_temperature"],
                       max_new_tokens=max_new_tokens, seed=c["eval_seed"])


def stage_ppo(out: Path, s: dict[str, Any], results: Path) -> None:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    if "ppo_trl" not in s:
        raise SystemExit(f"no PPO settings in the export: {s.get('ppo_error')}")
    cfg = dict(s["ppo_trl"]["args"])
    prompts = read_jsonl(out / "prompts-train-ppo.jsonl")
    run_dir = out / "runs" / "trl-ppo"
    shutil.rmtree(run_dir, ignore_errors=True)
    load = machine()
    t0 = time.perf_counter()
    tok = _load_tokenizer(out / "sft")
    tok.padding_side = "left"
    policy = AutoModelForCausalLM.from_pretrained(str(out / "sft"), local_files_only=True)
    ref = AutoModelForCausalLM.from_pretrained(str(out / "sft"), local_files_only=True)
    rm = AutoModelForSequenceClassification.from_pretrained(str(out / "rm"), num_labels=1, local_files_only=True)
    value = AutoModelForSequenceClassification.from_pretrained(str(out / "rm"), num_labels=1, local_files_only=True)
    data = Dataset.from_list([{"input_ids": tok(p["prompt"])["input_ids"]} for p in prompts])
    args = PPOConfig(output_dir=str(run_dir), **cfg)
    trainer = PPOTrainer(args=args, processing_class=tok, model=policy, ref_model=ref, reward_model=rm,
                         train_dataset=data, value_model=value)
    t1 = time.perf_counter()
    trainer.train()
    t2 = time.perf_counter()
    policy.save_pretrained(str(run_dir / "model"))
    tok.padding_side = "right"
    tok.save_pretrained(str(run_dir / "model"))
    ev = _evaluate(run_dir / "model", out, s, cfg["response_length"])
    append_result(results, {"framework": "trl", "stage": "ppo", "seed": s["config"]["seed"],
                            "steps": trainer.state.global_step, "train_s": t2 - t0, "fit_s": t2 - t1, **ev, **load,
                            **_versions(), "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=["reward", "grpo", "ppo"])
    ap.add_argument("--out", default="/tmp/lmbench", help="the export directory lm_compare.py wrote")
    ap.add_argument("--results", default=str(HERE / "results" / "lm_trl.jsonl"))
    ap.add_argument("--seed", type=int, default=None, help="TRL's seed (default: the export's, lrl's run seed)")
    a = ap.parse_args()
    _threads()
    import datasets  # noqa: F401  (heavy imports before any clock)
    import transformers  # noqa: F401
    import trl
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification  # noqa: F401

    if a.stage == "ppo":
        import trl.experimental.ppo  # noqa: F401
    else:
        from trl import GRPOTrainer, RewardTrainer  # noqa: F401
    out = Path(a.out).resolve()
    s = json.loads((out / "settings.json").read_text())
    if a.seed is not None:  # another TRL seed on the same export (same data, same SFT model)
        s["config"]["seed"] = a.seed
        for key in ("reward_trl", "grpo_trl", "ppo_trl"):
            if key in s:
                s[key]["args"].update(seed=a.seed, data_seed=a.seed)
    {"reward": stage_reward, "grpo": stage_grpo, "ppo": stage_ppo}[a.stage](out, s, Path(a.results))


if __name__ == "__main__":
    main()
