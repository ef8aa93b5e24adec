"""lrl recipes against Stable-Baselines3 / sb3-contrib: same hyperparameters, same machine, same evaluation.

What is compared
----------------
``PAIRS`` below is the whole configuration: one entry per comparison, naming the lrl recipe, the SB3 (or
sb3_contrib) algorithm class and a function that maps the *resolved* lrl recipe (every default filled in, as
``lrl.recipe.load`` returns it, as a plain dict) to that class's keyword arguments. The mapping is strict: each
function must consume every key of the recipe's ``algo:`` and ``data:`` sections (``_Section.take`` /
``.expect`` / ``.ignore``), so a hyperparameter added to an lrl algorithm, or a recipe setting SB3 cannot
express (e.g. a shared actor-critic body), stops the entry with one line naming the key instead of silently
comparing different experiments. Adding an algorithm pair (``dqn/cartpole`` ↔ DQN, ``sac/pendulum`` ↔ SAC,
``td3/pendulum`` ↔ TD3) is one mapping function and one ``PAIRS`` line; the workers, evaluation and summary are
generic. An entry whose recipe is not in this checkout is skipped with a message.

Protocol
--------
* Hyperparameters come from the lrl recipe (RL-Zoo's tuned sets for the CartPole recipes); SB3 gets them through
  the entry's mapping (``MlpPolicy`` with the same separate actor/critic MLP sizes, activation, initialisation,
  optimiser and ε, schedules, a ``DummyVecEnv`` of ``env.num_envs`` envs made by ``make_vec_env``, device cpu).
  lrl runs the recipe unchanged except ``seed``, ``budget.frames`` and switching off everything that SB3 does not
  do during ``learn``: ``eval.every_frames=0 eval.final=false checkpoint.every_frames=0`` (lrl still writes its
  final ``last.ckpt`` and logs training metrics to MLflow, which counts against it).
* Every training run is a fresh subprocess of this script (``--worker lrl|sb3``), so imports, thread settings and
  allocator state do not leak between runs. Seeds are interleaved and the order alternates (seed 0: lrl then
  SB3, seed 1: SB3 then lrl, ...), so slow drifts of a noisy machine hit both frameworks alike.
* Both use ``torch.set_num_threads(min(2, os.cpu_count()))``: lrl does this itself (``lrl.launch._threads``, or
  ``LRL_NUM_THREADS`` / ``OMP_NUM_THREADS`` when set), the SB3 worker does the same before building anything.
* ``train_s`` is wall-clock from just before env/model construction to the end of learning. Heavy imports happen
  before the clock starts in both workers (SB3: ``stable_baselines3`` / ``sb3_contrib``; lrl: lightning, torchrl,
  mlflow and the lrl modules that ``lrl.launch.run`` imports lazily). For lrl the clock starts when
  ``lrl.launch.run`` is entered (after recipe loading) and stops when ``Trainer.fit`` returns, so it includes the
  MLflow run set-up and the final checkpoint write but not the artifact upload after fit; ``fit_s`` is
  ``Trainer.fit`` alone and ``call_s`` the whole ``lrl.launch.train`` call. For SB3 ``train_s`` covers
  ``make_vec_env`` + the model constructor + ``learn``. ``proc_s`` is the whole subprocess (interpreter start,
  imports, training, evaluation), seen by the parent; ``load1`` is the 1-minute load average just before the run,
  to spot a busy machine.
* Evaluation (not timed in ``train_s``) is identical for both: ``--episodes`` (20) deterministic episodes of the
  recipe's environment, episode ``i`` on its own env seeded ``eval_seed + i``, each run to its end (termination or
  the time limit). lrl uses ``lrl.launch.evaluate_run`` (what ``lrl eval`` runs); SB3 uses the same loop with
  ``model.predict(obs, deterministic=True)``. An entry's ``bar`` is the mean return counted as "solved".
* The summary quotes medians (the reference machine has 2 noisy cores): median ``train_s`` per framework, the
  median of the per-seed ratios lrl/SB3 and the ratio of the medians, mean final return and seeds reaching the bar.

Usage::

    python benchmarks/vs_sb3.py                                    # every entry, 5 seeds, each recipe's budget
    python benchmarks/vs_sb3.py a2c/cartpole --seeds 3             # one entry
    python benchmarks/vs_sb3.py ppo/cartpole --seeds 1 --frames 20000   # quick smoke
    python benchmarks/vs_sb3.py ppo/cartpole --only lrl --precision bf16-mixed --seeds 2
    python benchmarks/vs_sb3.py --json-out results.json --work-dir /tmp/bench   # keep everything
    python benchmarks/vs_sb3.py --list                             # the entries and their SB3 keyword arguments
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FRAMEWORKS = ("lrl", "sb3")


class MappingError(Exception):
    """The resolved recipe holds something the entry's SB3 mapping does not (or cannot) express."""


# --- mapping helpers: resolved lrl recipe (plain dict) -> SB3 keyword arguments ----------------------------------
class _Section:
    """One recipe section whose keys must all be accounted for by a mapping."""

    def __init__(self, name: str, values: dict[str, Any]) -> None:
        self.name, self.values = name, {k: v for k, v in values.items() if k != "name"}
        self.used: set[str] = set()

    def take(self, key: str) -> Any:
        if key not in self.values:
            raise MappingError(f"the recipe has no {self.name}.{key}; update this entry's mapping to lrl's arguments")
        self.used.add(key)
        return self.values[key]

    def expect(self, key: str, *allowed: Any, why: str = "SB3 has no equivalent") -> Any:
        value = self.take(key)
        if value not in allowed:
            raise MappingError(f"{self.name}.{key}={value!r} cannot be compared ({why}); use {allowed[0]!r}")
        return value

    def ignore(self, *keys: str) -> None:
        """Keys that do not change what is learned (e.g. ``compile``)."""
        for key in keys:
            self.take(key)

    def done(self) -> None:
        left = sorted(set(self.values) - self.used)
        if left:
            raise MappingError(f"{', '.join(f'{self.name}.{k}' for k in left)} not mapped to SB3; extend this "
                               "entry's mapping (or mark the key as ignorable) before comparing")


class _Linear:
    """RL-Zoo's ``lin_x``: ``x * progress_remaining`` (1 → 0 over the run), lrl's ``linear`` schedules."""

    def __init__(self, start: float) -> None:
        self.start = start

    def __call__(self, progress_remaining: float) -> float:
        return self.start * progress_remaining

    def __repr__(self) -> str:
        return f"lin_{self.start:g}"


def _schedule(value: float, kind: str) -> float | _Linear:
    if kind not in ("constant", "linear"):
        raise MappingError(f"schedule '{kind}' has no SB3 mapping here")
    return _Linear(value) if kind == "linear" else value


def _policy_kwargs(algo: _Section, optimizer: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """lrl's ``ActorCritic`` (separate bodies, orthogonal init with SB3's gains) as SB3 ``MlpPolicy`` arguments."""
    from torch import nn

    activations = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU}
    hidden = algo.take("hidden") or []
    algo.expect("shared", False, why="SB3 >= 1.8 has no shared MLP layers between actor and critic")
    name, opt_kwargs = optimizer
    return {"net_arch": {"pi": list(hidden), "vf": list(hidden)}, "activation_fn": activations[algo.take("activation")],
            "ortho_init": algo.take("ortho_init"), "log_std_init": algo.take("log_std_init"),
            "optimizer_class": getattr(importlib.import_module("torch.optim"), name), "optimizer_kwargs": opt_kwargs}


def _on_policy_common(recipe: dict[str, Any], algo: _Section) -> dict[str, Any]:
    env = recipe["env"]
    return {"n_steps": recipe["data"]["frames_per_batch"] // env["num_envs"], "gamma": algo.take("gamma"),
            "gae_lambda": algo.take("gae_lambda"), "normalize_advantage": algo.take("normalize_advantage")}


def ppo_kwargs(recipe: dict[str, Any]) -> dict[str, Any]:
    algo, data = _Section("algo", recipe["algo"]), _Section("data", recipe["data"])
    data.ignore("frames_per_batch", "collector")  # -> n_steps; the collector does not change what is learned
    mb = data.take("minibatch_size")
    out = {
        **_on_policy_common(recipe, algo),
        "learning_rate": _schedule(algo.take("lr"), algo.take("lr_schedule")),
        "clip_range": _schedule(algo.take("clip_range"), algo.take("clip_schedule")),
        "clip_range_vf": algo.take("clip_range_vf"), "vf_coef": algo.take("vf_coef"),
        "ent_coef": algo.take("ent_coef"), "max_grad_norm": _grad_norm(algo.take("max_grad_norm")),
        "target_kl": algo.take("target_kl"), "n_epochs": data.take("epochs"),
        "batch_size": mb if mb is not None else recipe["data"]["frames_per_batch"],
        "policy_kwargs": _policy_kwargs(algo, ("Adam", {"eps": algo.take("adam_eps")})),
    }
    algo.ignore("compile")
    algo.done()
    data.done()
    return out


def a2c_kwargs(recipe: dict[str, Any]) -> dict[str, Any]:
    algo, data = _Section("algo", recipe["algo"]), _Section("data", recipe["data"])
    data.ignore("frames_per_batch", "collector")  # -> n_steps; the collector does not change what is learned
    data.expect("minibatch_size", None, why="A2C updates on the whole rollout")
    data.expect("epochs", 1, why="A2C takes one step per rollout")
    algo.expect("critic_lr", None, why="SB3's A2C has one learning rate")
    algo.expect("critic_lambda", None, recipe["algo"]["gae_lambda"], why="SB3's value target is the GAE λ-return")
    if algo.take("optimizer") == "rmsprop":
        optimizer = ("RMSprop", {"alpha": algo.take("rms_alpha"), "eps": algo.take("optim_eps"), "weight_decay": 0})
    else:
        algo.ignore("rms_alpha")
        optimizer = ("Adam", {"eps": algo.take("optim_eps")})
    out = {
        **_on_policy_common(recipe, algo),
        "learning_rate": _schedule(algo.take("lr"), algo.take("lr_schedule")),
        "vf_coef": algo.take("vf_coef"), "ent_coef": algo.take("ent_coef"),
        "max_grad_norm": _grad_norm(algo.take("max_grad_norm")),
        "policy_kwargs": _policy_kwargs(algo, optimizer),  # an explicit optimizer_class overrides use_rms_prop
    }
    algo.ignore("compile")
    algo.done()
    data.done()
    return out


def trpo_kwargs(recipe: dict[str, Any]) -> dict[str, Any]:
    """sb3_contrib TRPO. lrl's ``trpo`` is written on another branch: the argument names below are the expected
    ones; if they differ, the strict mapping stops with the key to rename here."""
    algo, data = _Section("algo", recipe["algo"]), _Section("data", recipe["data"])
    data.ignore("frames_per_batch", "collector")  # -> n_steps; the collector does not change what is learned
    data.expect("minibatch_size", None, why="TRPO's policy step uses the whole rollout")
    data.expect("epochs", 1, why="TRPO takes one policy step per rollout")
    out = {
        **_on_policy_common(recipe, algo),
        "target_kl": algo.take("max_kl"), "cg_max_steps": algo.take("cg_iters"),
        "cg_damping": algo.take("cg_damping"), "line_search_shrinking_factor": algo.take("backtrack_coef"),
        "line_search_max_iter": algo.take("max_backtracks"), "learning_rate": algo.take("critic_lr"),
        "n_critic_updates": algo.take("critic_updates"), "batch_size": algo.take("critic_minibatch_size"),
        "policy_kwargs": _policy_kwargs(algo, ("Adam", {"eps": algo.take("adam_eps")})),
    }
    algo.ignore("compile")
    algo.done()
    data.done()
    return out


def _grad_norm(value: float | None) -> float:
    return float("inf") if value is None else float(value)  # SB3 always clips; +inf never does


@dataclass(frozen=True)
class Pair:
    recipe: str  # lrl recipe name (recipes/<algo>/<env>.yaml)
    sb3_class: str  # "module:Class"
    sb3_kwargs: Callable[[dict[str, Any]], dict[str, Any]]  # resolved recipe -> constructor kwargs
    bar: float  # mean deterministic return counted as solved


PAIRS: dict[str, Pair] = {p.recipe: p for p in (
    Pair("ppo/cartpole", "stable_baselines3:PPO", ppo_kwargs, 475.0),
    Pair("a2c/cartpole", "stable_baselines3:A2C", a2c_kwargs, 475.0),
    Pair("trpo/cartpole", "sb3_contrib:TRPO", trpo_kwargs, 475.0),
)}


def _env_kwargs(recipe: dict[str, Any]) -> dict[str, Any]:
    """The recipe's env section as ``make_vec_env`` arguments (observation/reward normalisation not wired yet)."""
    env = recipe["env"]
    for key in ("normalize_obs", "normalize_reward"):
        if env[key]:
            raise MappingError(f"env.{key}=true: wire SB3's VecNormalize (and its statistics at evaluation) first")
    if env["vectorization"] != "sync":
        raise MappingError("env.vectorization: only 'sync' (SB3's DummyVecEnv) is compared")
    kwargs = dict(env["kwargs"])
    if env["max_episode_steps"] is not None:
        kwargs["max_episode_steps"] = env["max_episode_steps"]
    return {"env_id": env["id"], "n_envs": env["num_envs"], "env_kwargs": kwargs}


def _torch_threads() -> int:
    """What ``lrl.launch._threads`` picks for a single-device run."""
    for var in ("LRL_NUM_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(var, "").isdigit() and int(os.environ[var]) > 0:
            return int(os.environ[var])
    return max(1, min(2, os.cpu_count() or 1))


def _versions(*names: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str] = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "-"
    return out


# --- workers (run in their own subprocess) -----------------------------------------------------------------------
def worker_lrl(recipe: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    # Everything lrl.launch.run imports lazily is imported here, before any clock starts (as SB3 is imported
    # before its clock starts).
    import lightning.pytorch as pl
    import mlflow  # noqa: F401  (imported lazily by Lightning's MLFlowLogger)
    import torch

    import lrl.callbacks
    import lrl.launch as launch
    import lrl.tracking  # noqa: F401
    from lrl.recipe.registry import algorithm_class, datamodule_class

    algorithm_class(recipe["algo"]["name"])  # imports the algorithm and data modules (and torchrl, tensordict)
    datamodule_class(recipe["data"]["name"])

    marks: dict[str, float] = {}
    real_run, real_fit = launch.run, pl.Trainer.fit

    def timed_run(*a: Any, **kw: Any) -> Any:
        marks.setdefault("start", time.perf_counter())
        return real_run(*a, **kw)

    def timed_fit(self: pl.Trainer, *a: Any, **kw: Any) -> Any:
        marks["fit_start"] = time.perf_counter()
        try:
            return real_fit(self, *a, **kw)
        finally:
            marks["fit_end"] = time.perf_counter()

    launch.run = timed_run  # type: ignore[assignment]
    pl.Trainer.fit = timed_fit  # type: ignore[method-assign]

    overrides = [f"seed={args.seed}", f"budget.frames={args.frames}", "eval.every_frames=0", "eval.final=false",
                 "checkpoint.every_frames=0"]
    if args.precision:
        overrides.append(f"trainer.precision={args.precision}")
    run_dir = Path(args.run_dir)
    t_call = time.perf_counter()
    result = launch.train(args.pair, overrides, run_dir=run_dir, tracking_uri=args.tracking_uri)
    call_s = time.perf_counter() - t_call
    if "start" not in marks or "fit_end" not in marks:
        raise RuntimeError("lrl.launch.run / Trainer.fit were not called as expected; update the timing hooks")
    threads = torch.get_num_threads()
    t_eval = time.perf_counter()
    ev = launch.evaluate_run(run_dir, episodes=args.episodes, seed=args.eval_seed)
    eval_s = time.perf_counter() - t_eval
    return {
        "frames": int(result.frames),  # type: ignore[union-attr]
        "train_s": marks["fit_end"] - marks["start"], "fit_s": marks["fit_end"] - marks["fit_start"],
        "call_s": call_s, "eval_s": eval_s, "torch_threads": threads,
        "return_mean": float(ev["return_mean"]), "return_std": float(ev["return_std"]),
        "returns": [float(r) for r in ev["returns"]],
        "versions": _versions("lrl", "torch", "lightning", "torchrl", "gymnasium", "mlflow"),
    }


def worker_sb3(recipe: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    import gymnasium as gym
    import numpy as np
    import torch
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv

    pair = PAIRS[args.pair]
    module, _, name = pair.sb3_class.partition(":")
    cls = getattr(importlib.import_module(module), name)
    kwargs = pair.sb3_kwargs(recipe)
    env_kwargs = _env_kwargs(recipe)

    torch.set_num_threads(_torch_threads())
    t0 = time.perf_counter()
    env = make_vec_env(**env_kwargs, seed=args.seed, vec_env_cls=DummyVecEnv)
    model = cls("MlpPolicy", env, device="cpu", seed=args.seed, verbose=0, **kwargs)
    t_fit = time.perf_counter()
    model.learn(total_timesteps=args.frames)
    t1 = time.perf_counter()
    env.close()

    t_eval = time.perf_counter()
    returns: list[float] = []
    for i in range(args.episodes):
        eval_env = gym.make(env_kwargs["env_id"], **env_kwargs["env_kwargs"])
        obs, _ = eval_env.reset(seed=args.eval_seed + i)
        total, done = 0.0, False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = eval_env.step(action)
            total += float(reward)
            done = terminated or truncated
        eval_env.close()
        returns.append(total)
    eval_s = time.perf_counter() - t_eval
    arr = np.asarray(returns)
    return {
        "frames": int(model.num_timesteps), "train_s": t1 - t0, "fit_s": t1 - t_fit, "call_s": t1 - t0,
        "eval_s": eval_s, "torch_threads": torch.get_num_threads(),
        "return_mean": float(arr.mean()), "return_std": float(arr.std()), "returns": returns,
        "versions": _versions("stable_baselines3", "sb3_contrib", "torch", "gymnasium"),
    }


def worker_main(args: argparse.Namespace) -> None:
    recipe = json.loads(Path(args.recipe_json).read_text())
    out = worker_lrl(recipe, args) if args.worker == "lrl" else worker_sb3(recipe, args)
    Path(args.result).write_text(json.dumps(out))


# --- driver ------------------------------------------------------------------------------------------------------
def resolve(pair: Pair) -> dict[str, Any]:
    """The resolved recipe as a plain dict, after checking that the SB3 side can express all of it."""
    from lrl.errors import LrlError
    from lrl.recipe import load

    try:
        recipe = load(pair.recipe).to_dict()
    except LrlError as err:
        raise FileNotFoundError(err.message) from None
    pair.sb3_kwargs(recipe)
    _env_kwargs(recipe)
    return recipe


def _init_tracking(work: Path, uri: str) -> None:
    """Create the MLflow database and experiment once, untimed, so no lrl run pays for the schema migration."""
    code = (f"import mlflow; c = mlflow.MlflowClient({uri!r}); "
            "c.get_experiment_by_name('lrl') or c.create_experiment('lrl')")
    subprocess.run([sys.executable, "-c", code], cwd=work, check=True, capture_output=True)


def run_one(framework: str, pair: Pair, seed: int, frames: int, recipe_json: Path, args: argparse.Namespace,
            work: Path, uri: str) -> dict[str, Any]:
    tag = f"{pair.recipe.replace('/', '-')}-{framework}-seed{seed}"
    result_file, log_file = work / f"{tag}.json", work / f"{tag}.log"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", framework, "--pair", pair.recipe,
           "--recipe-json", str(recipe_json), "--seed", str(seed), "--frames", str(frames),
           "--episodes", str(args.episodes), "--eval-seed", str(args.eval_seed), "--result", str(result_file)]
    if framework == "lrl":
        cmd += ["--run-dir", str(work / tag), "--tracking-uri", uri]
        if args.precision:
            cmd += ["--precision", args.precision]
    load1 = os.getloadavg()[0]
    t0 = time.perf_counter()
    with log_file.open("w") as log:  # the worker runs in `work`, so nothing (e.g. ./mlruns) lands in the repo
        proc = subprocess.run(cmd, cwd=work, stdout=log, stderr=subprocess.STDOUT, check=False)
    proc_s = time.perf_counter() - t0
    if proc.returncode != 0 or not result_file.is_file():
        tail = "".join(log_file.read_text().splitlines(keepends=True)[-40:])
        raise SystemExit(f"{tag} failed (exit {proc.returncode}); last lines of {log_file}:\n{tail}")
    out: dict[str, Any] = json.loads(result_file.read_text())
    label = f"lrl[{args.precision}]" if framework == "lrl" and args.precision else framework
    out.update({"pair": pair.recipe, "framework": framework, "label": label, "seed": seed, "proc_s": proc_s,
                "load1": load1})
    return out


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


HEADER = (f"{'framework':<16} {'seed':>4} {'frames':>8} {'train_s':>8} {'fit_s':>7} {'call_s':>7} {'proc_s':>7} "
          f"{'eval_s':>6} {'load1':>5}   return mean ± std")


def print_row(r: dict[str, Any]) -> None:
    print(f"{r['label']:<16} {r['seed']:>4} {r['frames']:>8} {r['train_s']:>8.1f} {r['fit_s']:>7.1f} "
          f"{r['call_s']:>7.1f} {r['proc_s']:>7.1f} {r['eval_s']:>6.1f} {r['load1']:>5.1f}   "
          f"{r['return_mean']:6.1f} ± {r['return_std']:5.1f}", flush=True)


def summarize(runs: list[dict[str, Any]], frames: int, bar: float) -> dict[str, Any]:
    summary: dict[str, Any] = {"frames": frames, "bar": bar, "frameworks": {}}
    for label in dict.fromkeys(r["label"] for r in runs):
        rs = [r for r in runs if r["label"] == label]
        summary["frameworks"][label] = {
            "runs": len(rs),
            "median_train_s": _median([r["train_s"] for r in rs]),
            "median_fit_s": _median([r["fit_s"] for r in rs]),
            "median_call_s": _median([r["call_s"] for r in rs]),
            "median_proc_s": _median([r["proc_s"] for r in rs]),
            "median_fps": _median([r["frames"] / r["train_s"] for r in rs]),
            "mean_return": statistics.fmean(r["return_mean"] for r in rs),
            "returns_per_seed": [r["return_mean"] for r in rs],
            "solved": sum(r["return_mean"] >= bar for r in rs),
        }
    lrl = {r["seed"]: r for r in runs if r["framework"] == "lrl"}
    sb3 = {r["seed"]: r for r in runs if r["framework"] == "sb3"}
    paired = sorted(set(lrl) & set(sb3))
    if paired:
        for key in ("train_s", "proc_s"):
            ratios = [lrl[s][key] / sb3[s][key] for s in paired]
            summary[f"ratio_{key}"] = {
                "per_seed": ratios, "median_of_ratios": _median(ratios),
                "ratio_of_medians": _median([lrl[s][key] for s in paired]) / _median([sb3[s][key] for s in paired]),
            }
    return summary


def print_summary(name: str, summary: dict[str, Any]) -> None:
    bar = summary["bar"]
    print(f"\nSummary {name} ({summary['frames']:,} frames, medians over seeds)")
    print(f"{'framework':<16} {'train_s':>8} {'fit_s':>7} {'call_s':>7} {'proc_s':>7} {'fps':>7} "
          f"{'mean return':>12} {f'solved(>={bar:g})':>14}")
    for label, s in summary["frameworks"].items():
        print(f"{label:<16} {s['median_train_s']:>8.1f} {s['median_fit_s']:>7.1f} {s['median_call_s']:>7.1f} "
              f"{s['median_proc_s']:>7.1f} {s['median_fps']:>7.0f} {s['mean_return']:>12.1f} "
              f"{s['solved']:>7d}/{s['runs']}")
    for key in ("train_s", "proc_s"):
        ratio = summary.get(f"ratio_{key}")
        if ratio:
            per_seed = ", ".join(f"{x:.2f}" for x in ratio["per_seed"])
            print(f"lrl/SB3 {key}: median of per-seed ratios {ratio['median_of_ratios']:.2f}, "
                  f"ratio of medians {ratio['ratio_of_medians']:.2f}  (per seed: {per_seed})")


def list_pairs() -> None:
    for name, pair in PAIRS.items():
        try:
            kwargs = pair.sb3_kwargs(resolve(pair))
        except (FileNotFoundError, MappingError) as err:
            print(f"{name} <-> {pair.sb3_class}: not comparable here ({err})")
            continue
        print(f"{name} <-> {pair.sb3_class} (bar {pair.bar:g}):")
        for key, value in kwargs.items():
            print(f"    {key} = {value!r}")


def driver_main(args: argparse.Namespace) -> int:
    frameworks = [args.only] if args.only else list(FRAMEWORKS)
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="lrl-vs-sb3-"))
    work.mkdir(parents=True, exist_ok=True)
    work = work.resolve()
    uri = f"sqlite:///{work / 'mlflow.db'}"
    selected: list[tuple[Pair, dict[str, Any]]] = []
    skipped: dict[str, str] = {}
    for name in args.pairs or list(PAIRS):
        pair = PAIRS[name]
        try:
            selected.append((pair, resolve(pair)))
        except FileNotFoundError as err:
            skipped[name] = f"recipe not in this checkout ({err})"
        except MappingError as err:
            skipped[name] = f"hyperparameters cannot be mapped to {pair.sb3_class}: {err}"
    for name, why in skipped.items():
        print(f"SKIPPED {name}: {why}", flush=True)
    if "lrl" in frameworks and selected:
        _init_tracking(work, uri)
    print(f"lrl vs Stable-Baselines3: {', '.join(p.recipe for p, _ in selected) or 'nothing to run'}; "
          f"{args.seeds} seed(s), {args.episodes} eval episodes (seeds {args.eval_seed}+i), cpu_count="
          f"{os.cpu_count()}, torch threads {_torch_threads()}; work dir {work}", flush=True)
    results: dict[str, Any] = {}
    versions: dict[str, str] = {}
    try:
        for pair, recipe in selected:
            frames = args.frames or recipe["budget"]["frames"]
            recipe_json = work / f"{pair.recipe.replace('/', '-')}.recipe.json"
            recipe_json.write_text(json.dumps(recipe))
            print(f"\n== {pair.recipe} (lrl) vs {pair.sb3_class} (SB3), {frames:,} frames, bar {pair.bar:g}")
            print(HEADER, flush=True)
            runs: list[dict[str, Any]] = []
            results[pair.recipe] = {"sb3_class": pair.sb3_class, "runs": runs}
            for seed in range(args.seeds):
                order = frameworks if seed % 2 == 0 else frameworks[::-1]
                for framework in order:
                    runs.append(run_one(framework, pair, seed, frames, recipe_json, args, work, uri))
                    versions.update(runs[-1]["versions"])
                    print_row(runs[-1])
            results[pair.recipe]["summary"] = summarize(runs, frames, pair.bar)
    finally:
        for name, res in results.items():
            if res["runs"]:
                res.setdefault("summary", summarize(res["runs"], res["runs"][0]["frames"], PAIRS[name].bar))
                print_summary(name, res["summary"])
        if versions:
            print("versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())))
        if args.json_out:
            payload = {"config": {k: v for k, v in vars(args).items() if k != "worker"},
                       "cpu_count": os.cpu_count(), "versions": versions, "pairs": results, "skipped": skipped}
            Path(args.json_out).write_text(json.dumps(payload, indent=2))
            print(f"results written to {args.json_out}")
        if not args.work_dir and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if any("cannot be mapped" in why for why in skipped.values()) else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pairs", nargs="*", metavar="RECIPE", help=f"entries to run (default all: {', '.join(PAIRS)})")
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    p.add_argument("--frames", type=int, default=None, help="training frames per run (default: the recipe's budget)")
    p.add_argument("--episodes", type=int, default=20, help="deterministic evaluation episodes (default 20)")
    p.add_argument("--eval-seed", type=int, default=10_000, help="episode i is seeded eval_seed + i")
    p.add_argument("--only", choices=FRAMEWORKS, help="run one framework only")
    p.add_argument("--precision", help="lrl trainer.precision, e.g. bf16-mixed (SB3 always runs fp32)")
    p.add_argument("--json-out", help="write all runs and the summaries to this JSON file")
    p.add_argument("--work-dir", help="keep run directories, logs and mlflow.db here (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the temporary work dir")
    p.add_argument("--list", action="store_true", help="print each entry's SB3 keyword arguments and exit")
    # internal: one training run in this subprocess
    p.add_argument("--worker", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    p.add_argument("--pair", help=argparse.SUPPRESS)
    p.add_argument("--recipe-json", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--run-dir", help=argparse.SUPPRESS)
    p.add_argument("--tracking-uri", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    unknown = [name for name in args.pairs if name not in PAIRS]
    if unknown:
        p.error(f"unknown entry {unknown[0]!r}; known: {', '.join(PAIRS)}")
    if args.seeds < 1 or args.episodes < 1 or (args.frames is not None and args.frames < 1):
        p.error("--seeds, --frames and --episodes must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker_main(args)
        return 0
    if args.list:
        list_pairs()
        return 0
    return driver_main(args)


if __name__ == "__main__":
    sys.exit(main())
