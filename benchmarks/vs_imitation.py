"""lrl's behavioural cloning and DAgger against the `imitation` library (HumanCompatibleAI, v1.0.1): same expert,
same demonstrations, same label budgets, same policy network, same number of gradient steps where the APIs allow.

Why a venv of its own
---------------------
imitation 1.0.1 pins gymnasium 0.29 and Stable-Baselines3 2.2; lrl runs on gymnasium 1.x. The imitation side
therefore runs in ``benchmarks/.venv-imitation`` (made on first use: ``python -m venv``, ``pip install
torch==<lrl's torch version> imitation==1.0.1``; ``--setup`` only makes it), as a subprocess
(``benchmarks/vs_imitation_side.py``) that imports nothing from lrl. Everything crosses as files:

* the expert: lrl's trained policy exported to an ``.npz`` (observation normalisation, the MLP's layers, how its
  output becomes an action), rebuilt in numpy on both sides (:func:`vs_imitation_side.expert_actions`) and checked
  against lrl's own ``Policy`` on the demonstrations' observations before anything runs; on the imitation side it
  is an SB3 ``BasePolicy``, the kind of expert imitation's DAgger trainers take;
* the demonstrations: recorded once with ``lrl demos EXPERT --episodes E --out ID`` into a Minari store inside the
  work dir; the lrl side reads them with ``data.dataset=ID data.max_samples=N``, the imitation side gets exactly
  those first N transitions (read with lrl's own reader, so the rows are the same) as
  ``imitation.data.types.Transitions``.

What is compared (per label budget N, per method, per seed)
-----------------------------------------------------------
* **BC**: lrl ``lrl train bc/cartpole data.dataset=ID data.max_samples=N seed=S`` vs imitation ``bc.BC`` on the same
  N transitions. **DAgger**: lrl ``lrl train dagger/cartpole data.expert=EXPERT data.label_budget=N seed=S`` vs
  imitation ``dagger.SimpleDAggerTrainer(total_timesteps=N)``.
* The imitation side's settings come from the *resolved* lrl recipe through strict mappings (:func:`bc_mapping`,
  :func:`dagger_mapping`): every key of the recipe's ``algo:`` and ``data:`` sections is mapped, required to a value
  imitation can express, or declared irrelevant, otherwise the method is skipped with one line naming the key.
  ``python benchmarks/vs_imitation.py --list`` prints the mapping. The differences no key can remove are listed in
  ``benchmarks/vs_imitation.md`` and in the mappings' docstrings.
* Evaluation is the same on both sides: ``--episodes`` deterministic episodes, episode ``i`` on its own env seeded
  ``eval_seed + i``, each to its end (lrl: ``lrl.launch.evaluate_run``, what ``lrl eval`` runs; imitation: the same
  loop with ``policy.predict(obs, deterministic=True)`` on gymnasium 0.29's env). The expert is evaluated on both
  sides too (a check that the two gymnasium versions' environments and the numpy expert agree).
* Time: ``proc_s`` is the wall clock of the training process as a user sees it (lrl: the ``lrl train`` command,
  interpreter start to exit, final checkpoint included; imitation: its subprocess minus the evaluation it runs
  after training); ``train_s`` is the training itself (lrl: the MLflow run's start to end; imitation: env
  construction to the end of ``train``). Both with one torch thread per process (``OMP_NUM_THREADS``/``--threads``).
  Seeds and the two sides are interleaved (seed 0: lrl first, seed 1: imitation first, ...). The summary quotes the
  median of the per-run ratios lrl/imitation.

Usage::

    python benchmarks/vs_imitation.py --setup                       # make the imitation venv only
    python benchmarks/vs_imitation.py --quick                       # smoke: 1 seed, budget 500, 5 eval episodes
    python benchmarks/vs_imitation.py                               # budgets 500 2000, BC and DAgger, 3 seeds
    python benchmarks/vs_imitation.py --expert /work/experts/ppo-cartpole --budgets 500 2000 --seeds 5
    python benchmarks/vs_imitation.py --list                        # the imitation-side settings and exit
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from vs_imitation_side import expert_actions  # noqa: E402  (the numpy expert, shared by both sides)

DEFAULT_VENV = HERE / ".venv-imitation"
IMITATION_VERSION = "1.0.1"
METHODS = ("bc", "dagger")
DATASET_ID = "vs-imitation/expert-v0"


class MappingError(Exception):
    """The resolved recipe holds something the imitation side does not (or cannot) express."""


# --- the imitation venv --------------------------------------------------------------------------------------------
def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_venv(venv: Path) -> Path:
    """The venv's python, after making the venv where it is missing or lacks imitation. A failing install stops
    the benchmark with pip's own last lines (the versions it could not resolve)."""
    python = venv_python(venv)
    probe = "import imitation, stable_baselines3, gymnasium, torch"
    if python.is_file() and subprocess.run([str(python), "-c", probe], capture_output=True).returncode == 0:
        return python
    import torch

    torch_version = torch.__version__.split("+")[0]
    print(f"making {venv}: torch=={torch_version}, imitation=={IMITATION_VERSION} (a few minutes, once)", flush=True)
    steps = [[sys.executable, "-m", "venv", str(venv)],
             [str(python), "-m", "pip", "install", "-q", f"torch=={torch_version}"],
             [str(python), "-m", "pip", "install", "-q", f"imitation=={IMITATION_VERSION}"]]
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
            raise SystemExit(f"cannot make the imitation venv: `{' '.join(cmd)}` failed (exit {proc.returncode}):\n"
                             f"{tail}")
    proc = subprocess.run([str(python), "-c", probe], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"the imitation venv at {venv} is made but does not import: {proc.stderr.strip()[-2000:]}")
    return python


# --- the expert: lrl policy -> npz -----------------------------------------------------------------------------------
def _sequential_layers(seq: Any) -> tuple[list[Any], list[str]]:
    from torch import nn

    names = {nn.Tanh: "tanh", nn.ReLU: "relu", nn.ELU: "elu", nn.GELU: "gelu"}
    linears: list[Any] = []
    acts: list[str] = []
    for layer in seq:
        if isinstance(layer, nn.Linear):
            linears.append(layer)
        elif type(layer) in names:
            acts.append(names[type(layer)])
        else:
            raise MappingError(f"cannot export a {type(layer).__name__} layer (only Linear and tanh/relu/elu/gelu)")
    return linears, acts


def _actor_candidates(module: Any) -> list[tuple[list[Any], list[str], str, dict[str, np.ndarray]]]:
    """Every (linear layers, activations, output kind, extra arrays) the module's acting network could be: lrl's
    policy-gradient nets and BC (``body``/``actor_body`` + a softmax, Gaussian or tanh-Gaussian head) and TD3/DDPG's
    deterministic actor (``net`` + tanh to the bounds). The caller keeps the one that reproduces ``act``."""
    from torch import nn

    from lrl.networks.heads import CategoricalHead, GaussianHead, TanhGaussianHead

    found: list[tuple[list[Any], list[str], str, dict[str, np.ndarray]]] = []
    for sub in module.modules():
        head = getattr(sub, "head", None)
        body = getattr(sub, "actor_body", None) or getattr(sub, "body", None)
        if isinstance(head, nn.Module) and isinstance(body, nn.Sequential):
            lin, acts = _sequential_layers(body)
            if isinstance(head, CategoricalHead):
                found.append(([*lin, head.linear], acts, "argmax", {}))
            elif isinstance(head, GaussianHead):
                found.append(([*lin, head.linear], acts, "identity", {}))
            elif isinstance(head, TanhGaussianHead):
                found.append(([*lin, head.mean], acts, "tanh", {"loc": head.loc.numpy(), "scale": head.scale.numpy()}))
        net = getattr(sub, "net", None)
        if hasattr(sub, "action_centre") and isinstance(net, nn.Sequential):
            lin, acts = _sequential_layers(net)
            found.append((lin, acts, "tanh", {"loc": sub.action_centre.numpy(), "scale": sub.action_scale.numpy()}))
    return found


def export_expert(ref: str, out: Path, check_obs: np.ndarray) -> dict[str, Any]:
    """Write lrl run ``ref``'s deterministic policy as an npz (see ``vs_imitation_side``) and check that the numpy
    forward pass gives lrl's actions on ``check_obs`` (and on noisy copies of them)."""
    from lrl.evaluate import load_policy

    policy = load_policy(ref)
    base: dict[str, np.ndarray] = {}
    if policy.obs_stats is not None:
        base.update(obs_mean=np.asarray(policy.obs_stats["mean"], np.float64),
                    obs_var=np.asarray(policy.obs_stats["var"], np.float64), clip_obs=np.asarray(policy.clip_obs))
    if policy._low is not None and policy._high is not None:
        base.update(low=policy._low, high=policy._high)
    rng = np.random.default_rng(0)
    obs = np.concatenate([check_obs, check_obs + rng.normal(0, 0.1, check_obs.shape)]).astype(np.float32)
    want = policy(obs)
    for linears, acts, kind, extra in _actor_candidates(policy.module):
        arrays = dict(base, n_layers=np.asarray(len(linears)), out=np.asarray(kind), **extra)
        for i, lin in enumerate(linears):
            arrays[f"W{i}"] = lin.weight.detach().cpu().numpy()
            arrays[f"b{i}"] = lin.bias.detach().cpu().numpy()
        for i, a in enumerate(acts):
            arrays[f"act{i}"] = np.asarray(a)
        got = expert_actions(arrays, obs)
        if kind == "argmax":
            agree = float(np.mean(got == want.reshape(got.shape)))
            ok = agree == 1.0
        else:
            agree = float(np.max(np.abs(got - want.reshape(got.shape))))
            ok = agree < 1e-4
        if ok:
            tmp = out.with_suffix(".tmp.npz")
            np.savez(tmp, **arrays)  # type: ignore[arg-type]
            tmp.replace(out)
            return {"kind": kind, "layers": [tuple(a.shape) for k, a in arrays.items() if k.startswith("W")],
                    "activations": acts, "normalised": "obs_mean" in arrays, "checked_on": len(obs),
                    "agreement": agree}
    raise MappingError(f"cannot export the policy of {ref} to numpy: no network in it reproduces its actions")


# --- demonstrations ----------------------------------------------------------------------------------------------
def lrl_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "lrl.cli", *args]


def record_demos(expert: str, episodes: int, work: Path, env: dict[str, str]) -> dict[str, Any]:
    """``lrl demos`` into the work dir's Minari store, once."""
    proc = subprocess.run(lrl_cmd("demos", expert, "--episodes", str(episodes), "--out", DATASET_ID), cwd=work,
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"`lrl demos` failed (exit {proc.returncode}): {(proc.stdout + proc.stderr).strip()[-2000:]}")
    from lrl.data.minari_io import minari_info

    info = minari_info(DATASET_ID)
    return {"episodes": info.total_episodes, "steps": info.total_steps, "summary": proc.stdout.strip()}


def demos_npz(n: int, out: Path) -> np.ndarray:
    """The first ``n`` transitions of the dataset, as lrl's ``data.max_samples=n`` reads them, as an npz for
    ``imitation.data.types.Transitions``; returns their observations."""
    from lrl.data.minari_io import read_minari_first

    td = read_minari_first(DATASET_ID, "data.dataset", n)

    def get(*keys: str) -> np.ndarray | None:
        for k in keys:
            if k in td:
                return np.asarray(td[k])
        return None

    obs, acts = get("observation"), get("action")
    if obs is None or acts is None:
        raise SystemExit(f"unexpected transition keys from lrl's Minari reader: {sorted(td)}")
    arrays = {"obs": obs.astype(np.float32), "acts": acts}
    nxt = get("next/observation", "next_observation")
    if nxt is not None:
        arrays["next_obs"] = nxt.astype(np.float32)
    tmp = out.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)  # type: ignore[arg-type]
    tmp.replace(out)
    return obs


# --- mappings: resolved lrl recipe (plain dict) -> imitation-side job ---------------------------------------------
class _Section:
    """One recipe section whose keys must all be accounted for by a mapping (as in vs_sb3.py)."""

    def __init__(self, name: str, values: dict[str, Any]) -> None:
        self.name, self.values = name, {k: v for k, v in (values or {}).items() if k != "name"}
        self.used: set[str] = set()

    def take(self, key: str, default: Any = None, required: bool = True) -> Any:
        if key not in self.values:
            if required:
                raise MappingError(f"the recipe has no {self.name}.{key}; update the mapping to lrl's arguments")
            return default
        self.used.add(key)
        return self.values[key]

    def expect(self, key: str, *allowed: Any, why: str = "imitation has no equivalent") -> Any:
        value = self.take(key, allowed[0], required=False)
        if value not in allowed:
            raise MappingError(f"{self.name}.{key}={value!r} cannot be compared ({why}); use {allowed[0]!r}")
        return value

    def ignore(self, *keys: str) -> None:
        for key in keys:
            self.take(key, required=False)

    def done(self) -> None:
        left = sorted(set(self.values) - self.used)
        if left:
            raise MappingError(f"{', '.join(f'{self.name}.{k}' for k in left)} not mapped to imitation; extend the "
                               "mapping (or mark the key as ignorable) before comparing")


def _bc_algo(recipe: dict[str, Any], discrete: bool) -> dict[str, Any]:
    """lrl's BC module → imitation's ``bc.BC`` + an SB3 ``ActorCriticPolicy`` with the same actor MLP.

    Same: Adam (lr, ε), hidden sizes, activation, orthogonal init, log-std init, the loss (discrete: the
    cross-entropy = imitation's mean negative log-likelihood; continuous: only ``loss: gaussian_nll``, which is
    imitation's likelihood with the learned state-independent log-std), the entropy bonus (lrl ``ent_coef`` =
    imitation ``ent_weight``: both subtract c·mean entropy). Refused: lrl's ``mse`` loss for continuous actions,
    an L2 penalty (imitation's ``l2_weight`` is ½Σ‖θ‖² over every parameter, biases and log-std included; lrl's
    Σ‖W‖² covers weight matrices only), gradient clipping and a learning-rate schedule (imitation's BC has
    neither)."""
    algo = _Section("algo", recipe["algo"])
    job: dict[str, Any] = {
        "lr": algo.take("lr"), "adam_eps": algo.take("adam_eps", 1e-8, required=False),
        "hidden": list(algo.take("hidden") or [64, 64]), "activation": algo.take("activation"),
        "ortho_init": algo.take("ortho_init", True, required=False),
        "log_std_init": algo.take("log_std_init", 0.0, required=False),
        "ent_weight": algo.take("ent_coef", 0.0, required=False), "l2_weight": 0.0,
    }
    algo.expect("lr_schedule", "constant", why="imitation's BC keeps one learning rate")
    algo.expect("l2_coef", 0.0, 0, why="imitation's l2_weight also penalises biases and the log-std")
    algo.expect("max_grad_norm", None, why="imitation's BC does not clip gradients")
    if discrete:
        algo.ignore("loss")  # a softmax has one likelihood
    else:
        algo.expect("loss", "gaussian_nll", why="imitation's BC fits the Gaussian's likelihood, not the mean's MSE")
    algo.ignore("compile")
    algo.done()
    return job


def bc_mapping(recipe: dict[str, Any]) -> dict[str, Any]:
    """``bc/<env>`` (data: demos) → ``bc.BC(batch_size=data.batch_size).train(n_batches=gradient steps)``.
    A ``samples`` budget becomes ⌈samples / batch_size⌉ gradient steps."""
    discrete = _discrete(recipe)
    job = _bc_algo(recipe, discrete)
    if recipe["data"]["name"] != "demos":
        raise MappingError(f"data.name={recipe['data']['name']!r}: BC is compared on demonstrations (demos)")
    data = _Section("data", recipe["data"])
    data.ignore("dataset", "max_samples")  # set by the benchmark: the same rows on both sides
    job["batch_size"] = data.take("batch_size")
    streams = data.take("streams", None, required=False)
    if streams:
        raise MappingError("data.streams cannot be compared (imitation's BC reads one dataset)")
    data.done()
    budget = recipe["budget"]
    if budget.get("steps"):
        job["gradient_steps"] = int(budget["steps"])
    elif budget.get("samples"):
        job["gradient_steps"] = math.ceil(int(budget["samples"]) / job["batch_size"])
    else:
        raise MappingError(f"budget {budget}: BC is compared in gradient steps or samples")
    job["env_id"] = recipe["env"]["id"]
    return job


def dagger_mapping(recipe: dict[str, Any]) -> dict[str, Any]:
    """``dagger/<env>`` (algo: bc, data: dagger) → ``dagger.SimpleDAggerTrainer`` around the same BC learner.

    Same: round 0 is the expert alone (lrl without ``data.dataset``: β₀ = 1; imitation: the β schedule below gives
    1 at round 0), then β_i from lrl's schedule (``constant`` β, ``linear`` β·max(0, 1 − i/beta_rounds),
    ``exponential`` β·decay^i; imitation takes any callable), the β coin thrown per step, every visited state
    labelled by the expert, the aggregate never replaced, ``steps_per_round`` gradient steps of ``batch_size`` after
    each round (``bc_train_kwargs={"n_batches": ...}``), and after the last round the rest of ``budget.steps`` on
    the final aggregate (lrl trains on until its budget; the imitation side calls ``BC.train`` once more).
    The learner acts with its mode when lrl's ``deterministic`` is true: imitation samples from the policy by default
    (``policy.predict(obs)``), so the imitation side's collector is given ``predict(obs, deterministic=True)``,
    the one change made to imitation's DAgger.
    Different (no key removes it): lrl stops collecting exactly at ``label_budget`` (the last episode cut), imitation
    finishes the round (``total_timesteps`` is a lower bound; the labels it used are reported); an imitation round
    holds at least ``batch_size`` steps (more episodes when the learner's are short), an lrl round exactly
    ``episodes_per_round`` episodes. Refused: initial demonstrations (``data.dataset``), ``data.streams``, a cap on
    the labels of one round (``data.labels_per_round``: imitation cannot cut a round)."""
    job = _bc_algo(recipe, _discrete(recipe))
    if recipe["data"]["name"] != "dagger":
        raise MappingError(f"data.name={recipe['data']['name']!r}: DAgger is compared on the dagger source")
    data = _Section("data", recipe["data"])
    data.ignore("expert", "label_budget")  # set by the benchmark: the same expert and budget on both sides
    data.ignore("save_rounds")  # lrl writes each round as a Minari dataset, imitation each episode to its scratch dir
    data.expect("dataset", None, why="imitation's SimpleDAggerTrainer would take them as expert_trajs, not compared")
    data.expect("streams", None, why="imitation's BC reads one dataset")
    data.expect("labels_per_round", None, why="an imitation round is whole episodes, at least batch_size steps")
    job.update(
        batch_size=data.take("batch_size"), round_min_episodes=data.take("episodes_per_round"),
        round_min_timesteps=0,  # imitation raises it to batch_size itself
        beta={"schedule": data.take("beta_schedule"), "beta": data.take("beta"), "decay": data.take("beta_decay"),
              "rounds": data.take("beta_rounds")},
        bc_train_kwargs={"n_batches": data.take("steps_per_round")},
        deterministic=bool(data.take("deterministic")),
    )
    data.done()
    budget = recipe["budget"]
    if not budget.get("steps"):
        raise MappingError(f"budget {budget}: DAgger is compared in gradient steps")
    job["total_gradient_steps"] = int(budget["steps"])
    job["env_id"] = recipe["env"]["id"]
    return job


def _discrete(recipe: dict[str, Any]) -> bool:
    import gymnasium as gym

    env = gym.make(recipe["env"]["id"])
    try:
        return isinstance(env.action_space, gym.spaces.Discrete)
    finally:
        env.close()


# --- runs --------------------------------------------------------------------------------------------------------
@dataclass
class Ctx:
    args: argparse.Namespace
    work: Path
    env: dict[str, str]  # the subprocess environment: MINARI_DATASETS_PATH, thread counts
    python: Path  # the imitation venv's
    uri: str
    expert_npz: Path


def _lrl_overrides(method: str, budget: int, seed: int, ctx: Ctx) -> list[str]:
    common = [f"seed={seed}", "eval.every=0", "eval.final=false", "checkpoint.every=0"]
    if method == "bc":
        return [f"data.dataset={DATASET_ID}", f"data.max_samples={budget}", *common]
    return [f"data.expert={ctx.args.expert}", f"data.label_budget={budget}",
            f"data.episodes_per_round={ctx.args.dagger_episodes_per_round}", *common]


def resolve(method: str, budget: int, ctx: Ctx) -> dict[str, Any]:
    from lrl.errors import LrlError
    from lrl.recipe import load

    name = ctx.args.bc_recipe if method == "bc" else ctx.args.dagger_recipe
    try:
        return load(name, _lrl_overrides(method, budget, 0, ctx)).to_dict()
    except LrlError as err:
        raise FileNotFoundError(f"{name}: {err.message}") from None


def run_lrl(method: str, budget: int, seed: int, ctx: Ctx) -> dict[str, Any]:
    import mlflow

    from lrl.launch import evaluate_run

    tag = f"lrl-{method}-{budget}-seed{seed}"
    run_dir = ctx.work / tag
    recipe = ctx.args.bc_recipe if method == "bc" else ctx.args.dagger_recipe
    cmd = lrl_cmd("train", recipe, *_lrl_overrides(method, budget, seed, ctx), "--run-dir", str(run_dir),
                  "--tracking-uri", ctx.uri)
    log = ctx.work / f"{tag}.log"
    t0 = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.run(cmd, cwd=ctx.work, env=ctx.env, stdout=fh, stderr=subprocess.STDOUT)
    proc_s = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{tag} failed (exit {proc.returncode}): {' '.join(cmd)}\n{_tail(log)}")
    facts = _mlflow_facts(mlflow.MlflowClient(ctx.uri), run_dir, method, budget)
    t_eval = time.perf_counter()
    ev = evaluate_run(run_dir, episodes=ctx.args.episodes, seed=ctx.args.eval_seed)
    return {"side": "lrl", "method": method, "budget": budget, "seed": seed, "proc_s": proc_s, **facts,
            "eval_s": time.perf_counter() - t_eval, "return_mean": float(ev["return_mean"]),
            "return_std": float(ev["return_std"]), "returns": [float(r) for r in ev["returns"]],
            "gradient_steps": ev["clock"] if ev["clock_unit"] == "steps" else None}


def _mlflow_facts(client: Any, run_dir: Path, method: str, budget: int) -> dict[str, Any]:
    """From the run's MLflow record (found by its ``lrl.run_dir`` tag): its start-to-end time, and for DAgger the
    labels it asked the expert for and its rounds (the source's ``dagger/labels``, ``dagger/round``); BC reads
    exactly ``max_samples`` rows."""
    ids = [e.experiment_id for e in client.search_experiments()]
    found = client.search_runs(ids, filter_string=f"tags.`lrl.run_dir` = '{run_dir.resolve()}'")
    if not found or not found[0].info.end_time:
        return {"train_s": float("nan"), "labels": budget}
    run = found[0]
    out: dict[str, Any] = {"train_s": (run.info.end_time - run.info.start_time) / 1000.0, "labels": budget}
    if method == "dagger":
        labels = client.get_metric_history(run.info.run_id, "dagger/labels")
        rounds = client.get_metric_history(run.info.run_id, "dagger/round")
        if labels:
            out["labels"] = int(max(m.value for m in labels))
        if rounds:
            out["rounds"] = int(max(m.value for m in rounds)) + 1
    return out


def run_imitation(method: str, budget: int, seed: int, job: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    tag = f"imitation-{method}-{budget}-seed{seed}"
    job = dict(job, method=method, seed=seed, episodes=ctx.args.episodes, eval_seed=ctx.args.eval_seed,
               threads=ctx.args.threads, expert=str(ctx.expert_npz))
    if method == "bc":
        job["demos"] = str(ctx.work / f"demos-{budget}.npz")
    else:
        job["label_budget"] = budget
    job_file, result_file, log = (ctx.work / f"{tag}.{ext}" for ext in ("job.json", "json", "log"))
    job_file.write_text(json.dumps(job))
    t0 = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.run([str(ctx.python), str(HERE / "vs_imitation_side.py"), str(job_file), str(result_file)],
                              cwd=ctx.work, env=ctx.env, stdout=fh, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or not result_file.is_file():
        raise SystemExit(f"{tag} failed (exit {proc.returncode})\n{_tail(log)}")
    out: dict[str, Any] = json.loads(result_file.read_text())
    out.update(side="imitation", method=method, budget=budget, seed=seed, proc_s=wall - out["eval_s"])
    return out


def evaluate_expert(ctx: Ctx, env_id: str) -> dict[str, float]:
    """The expert's mean return on both sides' environments (gymnasium 1.x via lrl, 0.29 via the venv)."""
    from lrl.launch import evaluate_run

    lrl_side = evaluate_run(ctx.args.expert, episodes=ctx.args.episodes, seed=ctx.args.eval_seed)["return_mean"]
    job = {"method": "expert", "env_id": env_id, "expert": str(ctx.expert_npz), "episodes": ctx.args.episodes,
           "eval_seed": ctx.args.eval_seed, "threads": ctx.args.threads, "seed": 0}
    job_file, result_file = ctx.work / "expert.job.json", ctx.work / "expert.json"
    job_file.write_text(json.dumps(job))
    proc = subprocess.run([str(ctx.python), str(HERE / "vs_imitation_side.py"), str(job_file), str(result_file)],
                          cwd=ctx.work, env=ctx.env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"the imitation side cannot run the expert: {(proc.stdout + proc.stderr)[-3000:]}")
    res = json.loads(result_file.read_text())
    return {"lrl": float(lrl_side), "imitation": float(res["return_mean"]), "versions": res["versions"]}


def _tail(path: Path, n: int = 40) -> str:
    return "".join(path.read_text().splitlines(keepends=True)[-n:])


# --- summary -----------------------------------------------------------------------------------------------------
def _median(xs: list[float]) -> float:
    xs = [x for x in xs if not math.isnan(x)]
    return statistics.median(xs) if xs else float("nan")


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for method, budget in dict.fromkeys((r["method"], r["budget"]) for r in runs):
        cell = [r for r in runs if r["method"] == method and r["budget"] == budget]
        row: dict[str, Any] = {"method": method, "budget": budget}
        for side in ("lrl", "imitation"):
            rs = [r for r in cell if r["side"] == side]
            rets = [r["return_mean"] for r in rs]
            row[side] = {"seeds": len(rs), "mean_return": statistics.fmean(rets) if rets else float("nan"),
                         "std_over_seeds": statistics.pstdev(rets) if len(rets) > 1 else 0.0,
                         "per_seed": rets, "labels": [r["labels"] for r in rs],
                         "median_proc_s": _median([r["proc_s"] for r in rs]),
                         "median_train_s": _median([r["train_s"] for r in rs])}
        by_seed = {(r["side"], r["seed"]): r for r in cell}
        seeds = sorted({r["seed"] for r in cell if ("lrl", r["seed"]) in by_seed and ("imitation", r["seed"]) in
                        by_seed})
        for key in ("proc_s", "train_s"):
            row[f"ratio_{key}"] = _median([by_seed["lrl", s][key] / by_seed["imitation", s][key] for s in seeds])
        rows.append(row)
    return rows


def _labels(side: dict[str, Any]) -> str:
    lo, hi = min(side["labels"], default=0), max(side["labels"], default=0)
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def print_table(rows: list[dict[str, Any]]) -> None:
    print("\n| method | budget | labels used lrl / imitation | lrl return | imitation return | lrl proc_s | "
          "imitation proc_s | lrl/imitation proc_s | lrl/imitation train_s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        a, b = row["lrl"], row["imitation"]
        print(f"| {row['method']} | {row['budget']} | {_labels(a)} / {_labels(b)} | "
              f"{a['mean_return']:.1f} ± {a['std_over_seeds']:.1f} | {b['mean_return']:.1f} ± "
              f"{b['std_over_seeds']:.1f} | {a['median_proc_s']:.1f} | {b['median_proc_s']:.1f} | "
              f"{row['ratio_proc_s']:.2f} | {row['ratio_train_s']:.2f} |")
    print("\nreturns: mean over seeds of each run's mean over the evaluation episodes, ± their sd over seeds; times: "
          "medians over seeds; ratios: median of the per-seed ratios")
    proc, train = _median([r["ratio_proc_s"] for r in rows]), _median([r["ratio_train_s"] for r in rows])
    print(f"median wall-clock ratio lrl/imitation over all cells: proc_s {proc:.2f}, train_s {train:.2f}")


# --- driver ------------------------------------------------------------------------------------------------------
def driver(args: argparse.Namespace) -> int:
    python = ensure_venv(Path(args.venv))
    if args.setup:
        print(f"imitation venv ready: {python}")
        return 0
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="lrl-vs-imitation-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, MINARI_DATASETS_PATH=str(work / "minari"), OMP_NUM_THREADS=str(args.threads),
               LRL_NUM_THREADS=str(args.threads), PYTHONPATH=os.pathsep.join(
                   p for p in (str(HERE.parent), os.environ.get("PYTHONPATH", "")) if p))
    os.environ["MINARI_DATASETS_PATH"] = env["MINARI_DATASETS_PATH"]  # lrl's reader, in this process
    ctx = Ctx(args, work, env, python, f"sqlite:///{work / 'mlflow.db'}", work / "expert.npz")
    try:
        return _drive(ctx)
    finally:
        if not args.work_dir and not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def _episodes_needed(expert: str, budget: int) -> int:
    import gymnasium as gym

    from lrl.evaluate import read_checkpoint, resolve_checkpoint
    from lrl.recipe import validate

    env = validate(read_checkpoint(resolve_checkpoint(expert))["lrl"]["recipe"], source="expert").env
    if env is None:
        raise SystemExit(f"the expert {expert} has no env: section to record demonstrations in")
    steps = env.max_episode_steps or gym.spec(env.id).max_episode_steps or 1000
    return math.ceil(budget / steps) + 1


def _drive(ctx: Ctx) -> int:
    args, work = ctx.args, ctx.work
    budgets = sorted(args.budgets)
    print(f"lrl vs imitation {IMITATION_VERSION}: expert {args.expert}, budgets {budgets}, methods {args.methods}, "
          f"{args.seeds} seed(s), {args.episodes} eval episodes (seeds {args.eval_seed}+i), {args.threads} torch "
          f"thread(s) per process; work dir {work}", flush=True)
    episodes = args.demo_episodes or _episodes_needed(args.expert, max(budgets))
    demos = record_demos(args.expert, episodes, work, ctx.env)
    print(f"demos: {demos['summary']}", flush=True)
    if demos["steps"] < max(budgets):
        raise SystemExit(f"the {episodes} demo episodes hold {demos['steps']} transitions, fewer than the budget "
                         f"{max(budgets)}; pass --demo-episodes")
    obs = None
    for b in budgets:
        obs = demos_npz(b, work / f"demos-{b}.npz")
    assert obs is not None
    info = export_expert(args.expert, ctx.expert_npz, obs)
    print(f"expert exported: {info}", flush=True)

    jobs: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    for method in args.methods:
        try:
            recipe = resolve(method, budgets[0], ctx)
            jobs[method] = (bc_mapping if method == "bc" else dagger_mapping)(recipe)
        except (FileNotFoundError, MappingError) as err:
            skipped[method] = str(err)
    for method, why in skipped.items():
        print(f"SKIPPED {method}: {why}", flush=True)
    if args.list:
        for method, job in jobs.items():
            print(f"{method}: imitation side {json.dumps(job)}")
        return 0
    env_id = next(iter(jobs.values()))["env_id"] if jobs else None
    expert_ret = evaluate_expert(ctx, env_id) if env_id else {}
    if expert_ret:
        print(f"expert return: lrl side {expert_ret['lrl']:.1f}, imitation side {expert_ret['imitation']:.1f}")

    runs: list[dict[str, Any]] = []
    try:
        for method in jobs:
            for budget in budgets:
                for seed in range(args.seeds):
                    order = ("lrl", "imitation") if seed % 2 == 0 else ("imitation", "lrl")
                    for side in order:
                        r = (run_lrl(method, budget, seed, ctx) if side == "lrl"
                             else run_imitation(method, budget, seed, jobs[method], ctx))
                        runs.append(r)
                        rounds = f"rounds {r['rounds']:>3}" if "rounds" in r else " " * 10
                        print(f"{side:<9} {method:<6} budget {budget:>6} seed {seed}  labels {r['labels']:>6} "
                              f"{rounds} steps {r.get('gradient_steps') or '-':>6}  proc_s {r['proc_s']:6.1f}  "
                              f"train_s {r['train_s']:6.1f}  return {r['return_mean']:7.1f} ± {r['return_std']:5.1f}",
                              flush=True)
    finally:
        rows = summarize(runs) if runs else []
        if rows:
            print_table(rows)
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(
                {"config": {k: v for k, v in vars(args).items()}, "expert": info, "expert_return": expert_ret,
                 "demos": demos, "jobs": jobs, "skipped": skipped, "runs": runs, "summary": rows}, indent=2,
                default=str))
    return 1 if skipped else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--expert", default=os.environ.get("LRL_CARTPOLE_EXPERT", "/work/experts/ppo-cartpole"),
                   help="lrl run directory of the expert (default $LRL_CARTPOLE_EXPERT or /work/experts/ppo-cartpole)")
    p.add_argument("--budgets", type=int, nargs="+", default=[500, 2000], help="expert labels (default 500 2000)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    p.add_argument("--episodes", type=int, default=20, help="deterministic evaluation episodes (default 20)")
    p.add_argument("--eval-seed", type=int, default=10_000, help="episode i is seeded eval_seed + i")
    p.add_argument("--demo-episodes", type=int, help="expert episodes to record (default: enough for the budgets)")
    p.add_argument("--bc-recipe", default="bc/cartpole")
    p.add_argument("--dagger-recipe", default="dagger/cartpole")
    p.add_argument("--dagger-episodes-per-round", type=int, default=1,
                   help="lrl's data.episodes_per_round = imitation's rollout_round_min_episodes (default 1: with the "
                        "recipe's 4, budgets up to 2000 are spent on round 0 alone, 4 expert episodes of 500 steps)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per training process (default 1)")
    p.add_argument("--quick", action="store_true", help="smoke check: 1 seed, budget 500, 5 evaluation episodes")
    p.add_argument("--venv", default=str(DEFAULT_VENV), help=f"the imitation venv (default {DEFAULT_VENV})")
    p.add_argument("--setup", action="store_true", help="make the imitation venv and exit")
    p.add_argument("--list", action="store_true", help="print the imitation-side settings and exit")
    p.add_argument("--json-out", help="write every run and the summary to this JSON file")
    p.add_argument("--work-dir", help="keep run directories, logs, demos and mlflow.db here (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the temporary work dir")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.budgets, args.episodes = 1, [min(args.budgets)], 5
    if args.seeds < 1 or args.episodes < 1 or args.threads < 1 or min(args.budgets) < 1:
        p.error("--seeds, --episodes, --threads and --budgets must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    return driver(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
