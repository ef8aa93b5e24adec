"""lrl's LM stages side by side with TRL (issue #14): the lrl half, and the export the TRL half (``lm_trl.py``,
run in its own virtual environment) reads. Same tiny model, same data, same settings, same evaluation.

Runs in the system python with ``PYTHONPATH`` at the lrl tree; every step is a subprocess of this script, so each
timed run starts from a fresh interpreter. Steps (``all`` runs them in this order)::

    sft         lrl train lm-sft/<task>                          -> OUT/sft   (untimed: both sides start from it)
    export      the lm-reward recipe's preference data (lrl's own lm-prefs source, built as lrl.launch.run builds it:
                train and held-out streams), the GRPO and PPO prompt pools (the rlhf-ppo recipes'), the held-out prompts
                the policies are scored on, and settings.json (the resolved recipes and the TRL keyword arguments
                mapped from them)                            -> OUT/prefs-*.jsonl, OUT/prompts-*.jsonl, settings.json
    lrl-reward  lrl train lm-reward/<task>, timed; held-out accuracy of RUN_DIR/model  -> results line; OUT/rm
    lrl-grpo    lrl train <grpo recipe> (rlhf-ppo, advantage grpo) from OUT/sft with OUT/rm on --task, timed; true
                score and KL to the SFT model on the held-out prompts                 -> results line
    lrl-ppo     the same with <ppo recipe> (advantage gae), for TRL 1.12's PPOTrainer -> results line

The mapping to TRL is strict (as ``vs_sb3.py``): every key of the recipes' ``algo:`` and ``data:`` sections is
mapped, required to a value TRL can express, or declared irrelevant; anything else stops the export with one line.
What cannot be mapped because it is code, not a key, is listed in ``benchmarks/README.md``.

Timing (seconds, ``time.perf_counter``; heavy imports before the clock): ``train_s`` from entering
``lrl.launch.run`` to the end of ``Trainer.fit`` (MLflow set-up and the final checkpoint included), ``fit_s``
``Trainer.fit`` alone, ``data_s`` the part of it spent building the data source (lm-reward: sampling and ranking
the preference data from the SFT policy, which TRL reads from the export instead). Periodic evaluation and
checkpoints are switched off (TRL does neither during ``train``); lm-reward evaluates held-out accuracy once, at the
last step.

Usage (2 shared cores: one thread each; ``lm_trl_bench.sh`` runs all of it per seed, frameworks alternating)::

    export OMP_NUM_THREADS=1 LRL_NUM_THREADS=1 PYTHONPATH=/path/to/lrl
    python benchmarks/lm_compare.py all --out /tmp/lmbench
    /work/venvs/trl/bin/python benchmarks/lm_trl.py reward --out /tmp/lmbench     # then grpo; ppo in trl-ppo
    python benchmarks/lm_compare.py table
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "lm_lrl.jsonl"
TRL_RESULTS = HERE / "results" / "lm_trl.jsonl"
sys.path.insert(0, str(HERE))

from lm_common import append_result, machine, policy_eval, read_jsonl, rm_accuracy, write_jsonl  # noqa: E402

# What lrl runs and what the TRL side mirrors. Budgets are the shipped recipes' unless overridden here.
DEFAULTS = {
    "task": "reverse",
    "seed": 0,
    "sft_recipe": "lm-sft/reverse",
    "reward_recipe": "lm-reward/reverse",
    "grpo_recipe": "rlhf-ppo/reverse-grpo",  # rlhf-ppo's GRPO recipe, run on --task (data.task is overridden)
    "ppo_recipe": "rlhf-ppo/reverse",
    "rl_prompts": 2048,  # budget.prompts of both RL runs (the shipped recipes' 8192 is a 15-minute chain's)
    "eval_prompts": 500,  # held-out prompts the policies are scored on
    "eval_seed": 0,
    "eval_temperature": 1.0,
}


# --- the mapping -----------------------------------------------------------------------------------------------------
class Unmappable(Exception):
    pass


class _Section:
    """Keys of one resolved recipe section; every key must be consumed (taken, expected or ignored)."""

    def __init__(self, name: str, items: dict[str, Any]) -> None:
        self.name, self.items, self.used = name, dict(items), set()

    def take(self, key: str) -> Any:
        self.used.add(key)
        return self.items[key]

    def expect(self, key: str, allowed: Any, why: str) -> Any:
        value = self.take(key)
        ok = value in allowed if isinstance(allowed, tuple) else value == allowed
        if not ok:
            raise Unmappable(f"{self.name}.{key}={value!r} cannot be compared: {why}")
        return value

    def ignore(self, *keys: str) -> None:
        self.used.update(k for k in keys if k in self.items)

    def done(self) -> None:
        left = sorted(set(self.items) - self.used)
        if left:
            raise Unmappable(f"{self.name}: {', '.join(left)} not mapped to TRL; extend lm_compare.py's mapping")


def _trainer_common(seed: int, steps: int, lr: float, schedule: str, eps: float, clip: float | None) -> dict[str, Any]:
    """transformers.TrainingArguments both TRL trainers get: Adam (AdamW with no weight decay, fused like lrl's),
    lrl's schedule and clip, fp32 on the CPU, no checkpointing, logging or evaluation during training."""
    return {"seed": seed, "data_seed": seed, "max_steps": steps, "learning_rate": lr,
            "lr_scheduler_type": {"constant": "constant", "linear": "linear"}[schedule], "warmup_steps": 0,
            "optim": "adamw_torch_fused", "weight_decay": 0.0, "adam_beta1": 0.9, "adam_beta2": 0.999,
            "adam_epsilon": eps, "max_grad_norm": 0.0 if clip is None else clip, "gradient_accumulation_steps": 1,
            "bf16": False, "fp16": False, "gradient_checkpointing": False, "use_cpu": True,
            "dataloader_num_workers": 0, "save_strategy": "no", "eval_strategy": "no", "report_to": "none",
            "logging_steps": max(1, steps // 10), "disable_tqdm": True}


def map_reward(recipe: dict[str, Any]) -> dict[str, Any]:
    """lm-reward ↔ trl.RewardTrainer. ``kwise`` (eq. 15.6: a prompt's C(K,2) pairs averaged as one batch element,
    the batch a mean over prompts) is, with every prompt contributing all its pairs, the mean pairwise loss over the
    batch's pairs: TRL gets all C(K,2) pairs of every prompt as rows (chosen = ranked higher by the annotator) and a
    batch of ``batch_size × C(K,2)`` pairs (its sampler shuffles pairs, not prompts). ``pairwise`` (eq. 15.4) reads
    the first two responses of each prompt: one pair per prompt."""
    algo, data = _Section("algo", recipe["algo"]), _Section("data", recipe["data"])
    algo.ignore("name", "init_from")
    loss = algo.expect("loss", ("kwise", "pairwise"), "TRL's RewardTrainer has the pairwise loss only (four_way "
                                                      "is a 4-way cross-entropy)")
    algo.expect("init", "policy", "TRL's RewardTrainer starts from the model it is given: the SFT directory")
    algo.expect("frozen_body", False, "RewardTrainer trains the whole model")
    algo.ignore("n_layer", "n_embd", "n_head", "n_positions")  # only for init: tiny
    algo.ignore("eval_every")  # set to the budget: one held-out evaluation at the end (TRL: none while training)
    algo.ignore("compile")
    data.ignore("name", "task", "policy", "prompts", "test_prompts", "noise", "temperature", "max_new_tokens")
    data.expect("streams", (None, {}), "extra streams are not part of the comparison")
    k = data.take("k")
    pairs = k * (k - 1) // 2 if loss == "kwise" else 1
    steps = recipe["budget"]["steps"]
    args = _trainer_common(recipe["seed"], steps, algo.take("lr"), algo.take("lr_schedule"), algo.take("adam_eps"),
                           algo.take("max_grad_norm"))
    args.update(per_device_train_batch_size=data.take("batch_size") * pairs, max_length=data.take("max_length"),
                dataloader_drop_last=True, center_rewards_coefficient=None, disable_dropout=True)
    algo.done()
    data.done()
    return {"args": args, "pairs": "all" if loss == "kwise" else "first_two"}


def map_grpo(recipe: dict[str, Any], advantage: str) -> dict[str, Any]:
    """rlhf-ppo with ``advantage: grpo`` ↔ trl.GRPOTrainer. One collection step of lrl (``prompts_per_batch``
    prompts × ``samples_per_prompt`` responses) is one TRL generation batch: ``per_device_train_batch_size`` =
    ``minibatch_size``, ``steps_per_generation`` = sequences / minibatch_size, ``num_iterations`` = ``epochs`` (TRL's
    μ), so both take the same optimiser steps on the same-sized minibatches; ``max_steps`` = collections × steps per
    collection. Loss ``bnpo`` = the token mean over the minibatch (lrl's ``grpo_loss``), k3 KL to the SFT model with
    β = ``kl_coef`` in the loss, advantages normalised by the group's (unbiased) std."""
    algo, data = _Section("algo", recipe["algo"]), _Section("data", recipe["data"])
    algo.ignore("name", "init_from", "policy_path", "reward_path", "compile")
    algo.expect("advantage", advantage, f"this entry compares advantage={advantage}")
    algo.expect("kl_target", None, "TRL's GRPOTrainer has a constant β only")
    algo.ignore("kl_horizon")  # only with kl_target
    algo.expect("ptx_coef", 0.0, "TRL's trainers have no PPO-ptx term")
    data.expect("ptx_batch_size", 0, "TRL's trainers have no PPO-ptx term")
    data.ignore("ptx_corpus", "name", "task", "policy", "train_prompts", "eval_prompts", "eval_samples_shown")
    data.expect("streams", (None, {}), "extra streams are not part of the comparison")
    ppb, k, mb = data.take("prompts_per_batch"), data.take("samples_per_prompt"), algo.take("minibatch_size")
    mb = mb or ppb * k
    seqs = ppb * k
    collections = recipe["budget"]["prompts"] // ppb
    epochs = algo.take("epochs")
    steps = collections * (seqs // mb) * epochs
    args = _trainer_common(recipe["seed"], steps, algo.take("lr"), algo.take("lr_schedule"), algo.take("adam_eps"),
                           algo.take("max_grad_norm"))
    args.update(temperature=algo.take("temperature"), top_k=0, top_p=1.0,
                max_completion_length=data.take("max_new_tokens"), disable_dropout=True, shuffle_dataset=True)
    if advantage == "grpo":
        algo.ignore("gae_lambda", "clip_range_vf", "vf_coef", "whiten_reward", "normalize_advantage")  # PPO only
        args.update(per_device_train_batch_size=mb, steps_per_generation=seqs // mb, num_generations=k,
                    num_iterations=epochs, beta=algo.take("kl_coef"), epsilon=algo.take("clip_range"),
                    loss_type="bnpo", scale_rewards="group", importance_sampling_level="token",
                    mask_truncated_completions=False, entropy_coef=algo.take("ent_coef"))
    else:  # PPO ↔ trl.experimental.ppo.PPOTrainer (TRL 1.12)
        if k != 1:
            raise Unmappable(f"data.samples_per_prompt={k}: TRL's PPOTrainer samples one response per prompt")
        algo.expect("ent_coef", 0.0, "TRL's PPOTrainer has no entropy bonus")
        algo.expect("whiten_reward", False, "TRL's PPOTrainer whitens the per-token rewards only with whiten_rewards "
                                            "(all tokens, KL included), not the sequence score r̂")
        algo.expect("normalize_advantage", True, "TRL's PPOTrainer always whitens the advantages")
        # PPOTrainer's rollout is per_device_train_batch_size × gradient_accumulation_steps sequences, split into
        # num_mini_batches minibatches (one optimiser step each when a micro-batch holds the whole minibatch)
        args.update(per_device_train_batch_size=seqs, local_rollout_forward_batch_size=seqs,
                    num_mini_batches=seqs // mb, num_ppo_epochs=epochs, kl_coef=algo.take("kl_coef"),
                    kl_estimator="k1", cliprange=algo.take("clip_range"), cliprange_value=algo.take("clip_range_vf"),
                    vf_coef=algo.take("vf_coef"), gamma=1.0, lam=algo.take("gae_lambda"), whiten_rewards=False,
                    response_length=args.pop("max_completion_length"), stop_token="eos",
                    missing_eos_penalty=None, total_episodes=collections * ppb, num_sample_generations=0)
        # not PPOConfig fields (PPOTrainer always disables dropout)
        for key in ("max_steps", "top_k", "top_p", "shuffle_dataset", "disable_dropout"):
            args.pop(key)
    algo.done()
    data.done()
    return {"args": args, "collections": collections, "sequences_per_collection": seqs}


# --- steps -----------------------------------------------------------------------------------------------------------
def _load_recipe(ref: str, overrides: list[str]) -> Any:
    from lrl.recipe.load import load

    return load(ref, overrides)


def rl_recipe(cfg: dict[str, Any], key: str) -> str:
    """The rlhf-ppo recipe of the ``key`` run (grpo / ppo) without ``algo.kl_target`` (a constant β, as TRL's
    trainers have; rlhf-ppo's default is null, but lrl's range rules refuse ``kl_target=null`` as an override), written
    to OUT/recipes/KEY.yaml."""
    import yaml

    from lrl.recipe.load import find_recipe

    data = yaml.safe_load(find_recipe(cfg[f"{key}_recipe"]).read_text())
    data["algo"].pop("kl_target", None)
    path = Path(cfg["out"]) / "recipes" / f"{key}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def _settings(out: Path) -> dict[str, Any]:
    return json.loads((out / "settings.json").read_text())


def _lrl_overrides(cfg: dict[str, Any], which: str) -> list[str]:
    """The overrides the lrl runs get (and the export resolves the recipes with)."""
    out = Path(cfg["out"])
    if which == "reward":
        reward_steps = cfg["reward_steps"]
        over = [f"seed={cfg['seed']}", f"data.policy={out / 'sft'}", "checkpoint.every=0"]
        if reward_steps:
            over.append(f"budget.steps={reward_steps}")
        return [*over, *cfg["reward_overrides"]]
    # what TRL cannot do is switched off on the lrl side too: the adaptive β (rl_recipe), PPO-ptx (and the ptx
    # stream lrl reads to measure the pretraining likelihood), whitening r̂ (PPO; TRL whitens no score)
    over = [f"seed={cfg['seed']}", f"data.policy={out / 'sft'}", f"algo.reward_path={out / 'rm'}",
            f"data.task={cfg['task']}", f"budget.prompts={cfg['rl_prompts']}",
            "eval.every=0", "eval.final=false", "checkpoint.every=0", "tracking.log_model=false",
            f"algo.advantage={which}", "algo.ptx_coef=0.0", "data.ptx_batch_size=0"]
    if which == "gae":
        over.append("algo.whiten_reward=false")
    return [*over, *(cfg["grpo_overrides"] if which == "grpo" else cfg["ppo_overrides"])]


def step_sft(cfg: dict[str, Any]) -> None:
    import lrl.launch as launch

    out = Path(cfg["out"])
    run_dir = out / "runs" / "sft"
    shutil.rmtree(run_dir, ignore_errors=True)
    launch.train(cfg["sft_recipe"], [f"seed={cfg['seed']}", *cfg["sft_overrides"]], run_dir=run_dir,
                 tracking_uri=cfg["tracking_uri"])
    shutil.rmtree(out / "sft", ignore_errors=True)
    shutil.copytree(run_dir / "model", out / "sft")


def _rows_from_stream(data: Any, tok: Any, prompt_end: str) -> list[dict[str, Any]]:
    """lm-prefs rows (token tensors [P, K, L]) back to text; the encoding round-trip is checked."""
    from lrl.lm.models import encode

    ids, utility, score = data["input_ids"], data["utility"], data["score"]
    rows = []
    for p in range(ids.shape[0]):
        texts = [tok.decode(ids[p, j].tolist(), skip_special_tokens=True) for j in range(ids.shape[1])]
        again = encode(tok, texts, ids.shape[-1])["input_ids"]
        if not bool((again == ids[p]).all()):
            raise RuntimeError(f"preference text does not round-trip through the tokenizer: {texts}")
        prompt = texts[0][:texts[0].index(prompt_end) + 1]
        if not all(t.startswith(prompt) for t in texts):
            raise RuntimeError(f"responses of one prompt do not share it: {texts}")
        rows.append({"prompt": prompt, "responses": [t[len(prompt):] for t in texts],
                     "utility": utility[p].tolist(), "score": score[p].tolist()})
    return rows


def step_export(cfg: dict[str, Any]) -> None:
    import torch

    import lrl.launch as launch
    from lrl.contract import schedule_of
    from lrl.lm.models import load_tokenizer
    from lrl.lm.task import get_task
    from lrl.recipe.registry import algorithm_class, datamodule_class
    from lrl.recipe.schema import algo_arguments

    out = Path(cfg["out"])
    prompt_end = {"reverse": ">", "arith": "="}[cfg["task"]]
    reward = _load_recipe(cfg["reward_recipe"], _lrl_overrides(cfg, "reward"))
    settings: dict[str, Any] = {"config": cfg, "reward_recipe": reward.to_dict()}
    settings["reward_trl"] = map_reward(reward.to_dict())

    # the preference data exactly as lm-reward's source builds it (same recipe, same seed, same code)
    spec = launch.probe_spec(reward)
    algo_cls = algorithm_class(reward.algo["name"])
    data = {k: v for k, v in reward.data.items() if k != "name"}
    dm = datamodule_class(reward.data["name"])(
        env=None, spec=spec, seed=reward.seed, budget=reward.budget.amount, clock_unit=reward.budget.unit,
        schedule=schedule_of(algo_arguments(reward.algo), algo_cls.consumes), **data)
    tok = load_tokenizer(out / "sft")
    t0 = time.perf_counter()
    dm.main.setup(0, 1, torch.device("cpu"))
    dm.streams["heldout"].setup(0, 1, torch.device("cpu"))
    settings["prefs_data_s"] = time.perf_counter() - t0
    write_jsonl(out / "prefs-train.jsonl", _rows_from_stream(dm.main.data, tok, prompt_end))
    write_jsonl(out / "prefs-test.jsonl", _rows_from_stream(dm.streams["heldout"].data, tok, prompt_end))

    task = get_task(cfg["task"])
    write_jsonl(out / "prompts-test.jsonl",
                ({"prompt": p} for p in task.prompts("test", cfg["eval_prompts"], cfg["eval_seed"])))
    for which, key in (("grpo", "grpo"), ("gae", "ppo")):
        try:
            rl = _load_recipe(rl_recipe(cfg, key), _lrl_overrides(cfg, which))
        except Exception as err:  # the recipe may not exist yet, or refuse a setting
            settings[f"{key}_error"] = f"{type(err).__name__}: {err}"
            continue
        settings[f"{key}_recipe"] = rl.to_dict()
        try:
            settings[f"{key}_trl"] = map_grpo(rl.to_dict(), which)
        except Unmappable as err:
            settings[f"{key}_error"] = str(err)
        # the pool lrl's prompts source draws from (data.train_prompts, the run's seed)
        pool = task.prompts("train", rl.data["train_prompts"], rl.seed)
        write_jsonl(out / f"prompts-train-{key}.jsonl", ({"prompt": p} for p in pool))
    (out / "settings.json").write_text(json.dumps(settings, indent=1, default=str))
    print(json.dumps({k: v for k, v in settings.items() if k.endswith(("_trl", "_error", "_s"))}, indent=1,
                     default=str))


def _timed_train(recipe_ref: str, overrides: list[str], run_dir: Path, tracking_uri: str,
                 data_cls: type | None = None) -> dict[str, float]:
    """lrl.launch.train with the clocks of vs_sb3.py (launch.run entered .. Trainer.fit returned)."""
    from vs_sb3 import phase_clocks

    import lrl.launch as launch

    marks = phase_clocks()
    if data_cls is not None:
        real_loader = data_cls.train_dataloader

        def timed_loader(self: Any) -> Any:
            t = time.perf_counter()
            try:
                return real_loader(self)
            finally:
                marks["data_s"] = marks.get("data_s", 0.0) + time.perf_counter() - t

        data_cls.train_dataloader = timed_loader
    shutil.rmtree(run_dir, ignore_errors=True)
    t = time.perf_counter()
    launch.train(recipe_ref, overrides, run_dir=run_dir, tracking_uri=tracking_uri)
    call_s = time.perf_counter() - t
    return {"train_s": marks["fit_end"] - marks["start"], "fit_s": marks["fit_end"] - marks["fit_start"],
            "data_s": marks.get("data_s", 0.0), "call_s": call_s}


def _warm_imports() -> None:
    import lightning  # noqa: F401
    import mlflow  # noqa: F401
    import transformers  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification  # noqa: F401

    import lrl.launch  # noqa: F401


def step_lrl_reward(cfg: dict[str, Any]) -> None:
    from lrl.data.lm_text import LMPrefsDataModule

    _warm_imports()
    out = Path(cfg["out"])
    s = _settings(out)
    steps = s["reward_recipe"]["budget"]["steps"]
    run_dir = out / "runs" / "lrl-reward"
    load = machine()
    times = _timed_train(cfg["reward_recipe"], [*_lrl_overrides(cfg, "reward"), f"algo.eval_every={steps}"],
                         run_dir, cfg["tracking_uri"], LMPrefsDataModule)
    rm = rm_accuracy(run_dir / "model", read_jsonl(out / "prefs-test.jsonl"), s["reward_recipe"]["data"]["max_length"])
    shutil.rmtree(out / "rm", ignore_errors=True)
    shutil.copytree(run_dir / "model", out / "rm")
    append_result(cfg["results"], {"framework": "lrl", "stage": "reward", "seed": cfg["seed"], "steps": steps,
                                   **times, **rm, **load, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})


def _policy_dir(run_dir: Path, sft: Path) -> Path:
    """RUN_DIR/model when the stage wrote one; otherwise the policy's weights from the final checkpoint, saved as a
    transformers directory next to it."""
    if (run_dir / "model" / "config.json").exists():
        return run_dir / "model"
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    model = AutoModelForCausalLM.from_pretrained(str(sft), local_files_only=True)
    policy = {k[len("policy."):]: v for k, v in state.items() if k.startswith("policy.")}
    missing, unexpected = model.load_state_dict(policy, strict=False)
    if unexpected or [m for m in missing if not m.endswith("lm_head.weight")]:
        raise RuntimeError(f"policy weights do not fit the SFT model: missing {missing}, unexpected {unexpected}")
    target = run_dir / "policy-from-ckpt"
    model.save_pretrained(str(target))
    AutoTokenizer.from_pretrained(str(sft)).save_pretrained(str(target))
    return target


def evaluate_policy(policy: Path, cfg: dict[str, Any], max_new_tokens: int) -> dict[str, float]:
    out = Path(cfg["out"])
    prompts = [r["prompt"] for r in read_jsonl(out / "prompts-test.jsonl")]
    return policy_eval(policy, out / "sft", cfg["task"], prompts, temperature=cfg["eval_temperature"],
                       max_new_tokens=max_new_tokens, seed=cfg["eval_seed"])


def step_lrl_rl(cfg: dict[str, Any], which: str) -> None:
    _warm_imports()
    out = Path(cfg["out"])
    s = _settings(out)
    key = "grpo" if which == "grpo" else "ppo"
    if f"{key}_recipe" not in s:
        raise SystemExit(f"no {key} recipe in the export: {s.get(f'{key}_error')}")
    recipe = s[f"{key}_recipe"]
    run_dir = out / "runs" / f"lrl-{key}"
    load = machine()
    times = _timed_train(rl_recipe(cfg, key), _lrl_overrides(cfg, which), run_dir, cfg["tracking_uri"])
    ev = evaluate_policy(_policy_dir(run_dir, out / "sft"), cfg, recipe["data"]["max_new_tokens"])
    append_result(cfg["results"], {"framework": "lrl", "stage": key, "seed": cfg["seed"],
                                   "prompts": recipe["budget"]["prompts"], **times, **ev, **load,
                                   "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})


def step_sft_eval(cfg: dict[str, Any]) -> None:
    """The SFT policy itself on the held-out prompts (KL 0 by definition): the baseline both RL runs start from."""
    out = Path(cfg["out"])
    s = _settings(out)
    n = s.get("grpo_recipe", {}).get("data", {}).get("max_new_tokens", 8)
    append_result(cfg["results"], {"framework": "sft", "stage": "sft", "seed": cfg["seed"],
                                   **evaluate_policy(out / "sft", cfg, n)})


def _cell(r: dict[str, Any], k: str, w: int, d: int = 3) -> str:
    return f"{r[k]:>{w}.{d}f}" if isinstance(r.get(k), (int, float)) else f"{'-':>{w}}"


def table(paths: list[Path]) -> None:
    rows = [r for p in paths if p.exists() for r in read_jsonl(p)]
    print(f"{'framework':<10} {'stage':<7} {'seed':>4} {'train_s':>8} {'fit_s':>7} {'data_s':>7} {'acc':>6} "
          f"{'acc_ann':>7} {'true':>6} {'kl':>6} {'load1':>5}")
    for r in rows:
        print(f"{r['framework']:<10} {r['stage']:<7} {r.get('seed', '-'):>4} {_cell(r, 'train_s', 8, 1)} "
              f"{_cell(r, 'fit_s', 7, 1)} {_cell(r, 'data_s', 7, 1)} {_cell(r, 'accuracy', 6)} "
              f"{_cell(r, 'accuracy_annotator', 7)} {_cell(r, 'true_score', 6)} {_cell(r, 'kl', 6)} "
              f"{_cell(r, 'load1', 5, 2)}")
    print("\nover seeds: mean ± std (n) of the metrics, median of the clocks")
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["framework"], r["stage"]), []).append(r)
    for (fw, stage), rs in groups.items():
        parts = []
        for k in ("accuracy", "accuracy_annotator", "true_score", "kl"):
            v = [r[k] for r in rs if isinstance(r.get(k), (int, float))]
            if v and not (k == "kl" and fw == "sft"):
                sd = statistics.stdev(v) if len(v) > 1 else 0.0
                parts.append(f"{k} {statistics.mean(v):.3f} ± {sd:.3f} ({len(v)})")
        for k in ("train_s", "fit_s", "data_s"):
            v = [r[k] for r in rs if isinstance(r.get(k), (int, float))]
            if v:
                parts.append(f"{k} {statistics.median(v):.1f}")
        print(f"{fw:<5} {stage:<7} " + ", ".join(parts))


STEPS = ["sft", "export", "sft-eval", "lrl-reward", "lrl-grpo", "lrl-ppo"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=[*STEPS, "all", "table"])
    ap.add_argument("--out", default="/tmp/lmbench", help="export and run directory")
    ap.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    ap.add_argument("--task", default=DEFAULTS["task"])
    ap.add_argument("--sft-recipe", default=DEFAULTS["sft_recipe"])
    ap.add_argument("--reward-recipe", default=DEFAULTS["reward_recipe"])
    ap.add_argument("--grpo-recipe", default=DEFAULTS["grpo_recipe"], help="rlhf-ppo GRPO recipe (name or path)")
    ap.add_argument("--ppo-recipe", default=DEFAULTS["ppo_recipe"], help="rlhf-ppo PPO recipe (name or path)")
    ap.add_argument("--rl-prompts", type=int, default=DEFAULTS["rl_prompts"], help="budget.prompts of the RL runs")
    ap.add_argument("--reward-steps", type=int, default=0, help="lm-reward budget.steps (0: the recipe's)")
    ap.add_argument("--sft-override", action="append", default=[], help="KEY=VALUE for lm-sft (repeatable)")
    ap.add_argument("--reward-override", action="append", default=[], help="KEY=VALUE for lm-reward")
    ap.add_argument("--grpo-override", action="append", default=[], help="KEY=VALUE for the GRPO run")
    ap.add_argument("--ppo-override", action="append", default=[], help="KEY=VALUE for the PPO run")
    ap.add_argument("--eval-prompts", type=int, default=DEFAULTS["eval_prompts"])
    ap.add_argument("--results", default=str(RESULTS))
    a = ap.parse_args()
    if a.step == "table":  # lrl's results and TRL's beside them (lm_trl.jsonl in the same folder)
        table([Path(a.results), Path(a.results).with_name(TRL_RESULTS.name)])
        return
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cfg = {"out": str(out), "seed": a.seed, "task": a.task, "sft_recipe": a.sft_recipe,
           "reward_recipe": a.reward_recipe, "grpo_recipe": a.grpo_recipe, "ppo_recipe": a.ppo_recipe,
           "rl_prompts": a.rl_prompts, "reward_steps": a.reward_steps,
           "sft_overrides": a.sft_override, "reward_overrides": a.reward_override,
           "grpo_overrides": a.grpo_override, "ppo_overrides": a.ppo_override, "eval_prompts": a.eval_prompts,
           "eval_seed": DEFAULTS["eval_seed"], "eval_temperature": DEFAULTS["eval_temperature"],
           "tracking_uri": f"sqlite:///{out / 'mlflow.db'}", "results": a.results}
    if a.step == "all":
        for step in STEPS:
            argv = [sys.executable, __file__, step, *sys.argv[2:]]
            print("+", " ".join(argv[1:]), flush=True)
            if subprocess.run(argv, env=os.environ).returncode != 0:
                raise SystemExit(f"step {step} failed")
        return
    {"sft": step_sft, "export": step_export, "sft-eval": step_sft_eval, "lrl-reward": step_lrl_reward,
     "lrl-grpo": lambda c: step_lrl_rl(c, "grpo"), "lrl-ppo": lambda c: step_lrl_rl(c, "gae")}[a.step](cfg)


if __name__ == "__main__":
    main()
