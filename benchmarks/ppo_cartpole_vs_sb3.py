"""lrl's ``ppo/cartpole`` recipe against Stable-Baselines3 PPO: same hyperparameters, same machine.

Protocol
--------
* Hyperparameters are RL-Zoo's CartPole-v1 PPO, which is what ``recipes/ppo/cartpole.yaml`` holds: 8 envs,
  n_steps 32 (256 frames per rollout), batch_size 256, n_epochs 20, gamma 0.98, gae_lambda 0.8, learning rate
  linear 1e-3 → 0, clip range linear 0.2 → 0, ent_coef 0, vf_coef 0.5, max_grad_norm 0.5, separate 64x64 tanh
  actor and critic MLPs with orthogonal init, Adam eps 1e-5, advantages normalised per minibatch, 100k frames.
  SB3 gets them explicitly (``MlpPolicy``, a ``DummyVecEnv`` of 8 ``CartPole-v1`` made by ``make_vec_env``,
  device cpu); lrl runs the recipe unchanged except ``seed``, ``budget.frames`` and switching off everything
  that SB3 does not do during ``learn``: ``eval.every_frames=0 eval.final=false checkpoint.every_frames=0``
  (lrl still writes its final ``last.ckpt`` and logs training metrics to MLflow, which counts against it).
* Every training run is a fresh subprocess of this script (``--worker lrl|sb3``), so imports, thread settings and
  allocator state do not leak between runs. Seeds are interleaved and the order alternates (seed 0: lrl then
  SB3, seed 1: SB3 then lrl, ...), so slow drifts of a noisy machine hit both frameworks alike.
* Both use ``torch.set_num_threads(min(2, os.cpu_count()))``: lrl does this itself (``lrl.launch._threads``),
  the SB3 worker does the same before building anything.
* ``train_s`` is wall-clock from just before env/model construction to the end of learning. Heavy imports happen
  before the clock starts in both workers (SB3: ``stable_baselines3``; lrl: lightning, torchrl, mlflow and the lrl
  modules that ``lrl.launch.run`` imports lazily). For lrl the clock starts when ``lrl.launch.run`` is entered
  (after recipe loading) and stops when ``Trainer.fit`` returns, so it includes the MLflow run set-up and the
  final checkpoint write but not the artifact upload after fit; ``fit_s`` is ``Trainer.fit`` alone and
  ``call_s`` the whole ``lrl.launch.train`` call. For SB3 ``train_s`` covers ``make_vec_env`` + ``PPO(...)`` +
  ``learn``. ``proc_s`` is the whole subprocess (interpreter start, imports, training, evaluation), seen by the
  parent; ``load1`` is the 1-minute load average just before the run, to spot a busy machine.
* Evaluation (not timed in ``train_s``) is identical for both: ``--episodes`` (20) deterministic episodes of
  ``CartPole-v1``, episode ``i`` on its own env seeded ``eval_seed + i``, each run to its end (termination or the
  500-step truncation). lrl uses ``lrl.launch.evaluate_run`` (what ``lrl eval`` runs); SB3 uses the same loop with
  ``model.predict(obs, deterministic=True)``. "Solved" means a mean return >= 475.
* The summary quotes medians (the reference machine has 2 noisy cores): median ``train_s`` per framework, the
  median of the per-seed ratios lrl/SB3 and the ratio of the medians, mean final return and solved seeds.

Usage::

    python benchmarks/ppo_cartpole_vs_sb3.py                        # 5 seeds, 100k frames, both frameworks
    python benchmarks/ppo_cartpole_vs_sb3.py --seeds 1 --frames 20000   # quick smoke
    python benchmarks/ppo_cartpole_vs_sb3.py --only lrl --precision bf16-mixed --seeds 2
    python benchmarks/ppo_cartpole_vs_sb3.py --json-out results.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

FRAMEWORKS = ("lrl", "sb3")
ENV_ID = "CartPole-v1"
N_ENVS = 8
SOLVED = 475.0
RECIPE = "ppo/cartpole"
# RL-Zoo hyperparameters for CartPole-v1 PPO (also in recipes/ppo/cartpole.yaml); SB3 gets them from here.
SB3_KWARGS: dict[str, Any] = {
    "n_steps": 32, "batch_size": 256, "n_epochs": 20, "gamma": 0.98, "gae_lambda": 0.8, "ent_coef": 0.0,
    "vf_coef": 0.5, "max_grad_norm": 0.5,
}
LR, CLIP = 1e-3, 0.2


def _torch_threads() -> int:
    """What ``lrl.launch._threads`` picks for a single-device run."""
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
def worker_lrl(seed: int, frames: int, run_dir: Path, tracking_uri: str, precision: str | None, episodes: int,
               eval_seed: int) -> dict[str, Any]:
    # Everything lrl.launch.run imports lazily is imported here, before any clock starts (as SB3 is imported
    # before its clock starts).
    import lightning.pytorch as pl
    import mlflow  # noqa: F401  (imported lazily by Lightning's MLFlowLogger)
    import torch

    import lrl.callbacks
    import lrl.launch as launch
    import lrl.tracking  # noqa: F401
    from lrl.recipe.registry import algorithm_class, datamodule_class

    algorithm_class("ppo")  # imports the algorithm and data modules (and torchrl, tensordict)
    datamodule_class("onpolicy")

    marks: dict[str, float] = {}
    real_run, real_fit = launch.run, pl.Trainer.fit

    def timed_run(*args: Any, **kwargs: Any) -> Any:
        marks.setdefault("start", time.perf_counter())
        return real_run(*args, **kwargs)

    def timed_fit(self: pl.Trainer, *args: Any, **kwargs: Any) -> Any:
        marks["fit_start"] = time.perf_counter()
        try:
            return real_fit(self, *args, **kwargs)
        finally:
            marks["fit_end"] = time.perf_counter()

    launch.run = timed_run  # type: ignore[assignment]
    pl.Trainer.fit = timed_fit  # type: ignore[method-assign]

    overrides = [f"seed={seed}", f"budget.frames={frames}", "eval.every_frames=0", "eval.final=false",
                 "checkpoint.every_frames=0"]
    if precision:
        overrides.append(f"trainer.precision={precision}")
    t_call = time.perf_counter()
    result = launch.train(RECIPE, overrides, run_dir=run_dir, tracking_uri=tracking_uri)
    call_s = time.perf_counter() - t_call
    if "start" not in marks or "fit_end" not in marks:
        raise RuntimeError("lrl.launch.run / Trainer.fit were not called as expected; update the timing hooks")
    threads = torch.get_num_threads()
    t_eval = time.perf_counter()
    ev = launch.evaluate_run(run_dir, episodes=episodes, seed=eval_seed)
    eval_s = time.perf_counter() - t_eval
    return {
        "frames": int(result.frames),  # type: ignore[union-attr]
        "train_s": marks["fit_end"] - marks["start"], "fit_s": marks["fit_end"] - marks["fit_start"],
        "call_s": call_s, "eval_s": eval_s, "torch_threads": threads,
        "return_mean": float(ev["return_mean"]), "return_std": float(ev["return_std"]),
        "returns": [float(r) for r in ev["returns"]],
        "versions": _versions("lrl", "torch", "lightning", "torchrl", "gymnasium", "mlflow"),
    }


class _Linear:
    """RL-Zoo's ``lin_x``: ``x * progress_remaining`` (1 → 0 over the run)."""

    def __init__(self, start: float) -> None:
        self.start = start

    def __call__(self, progress_remaining: float) -> float:
        return self.start * progress_remaining


def worker_sb3(seed: int, frames: int, episodes: int, eval_seed: int) -> dict[str, Any]:
    import gymnasium as gym
    import numpy as np
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv

    torch.set_num_threads(_torch_threads())
    t0 = time.perf_counter()
    env = make_vec_env(ENV_ID, n_envs=N_ENVS, seed=seed, vec_env_cls=DummyVecEnv)
    model = PPO("MlpPolicy", env, learning_rate=_Linear(LR), clip_range=_Linear(CLIP),
                policy_kwargs={"net_arch": [64, 64], "activation_fn": torch.nn.Tanh},
                device="cpu", seed=seed, verbose=0, **SB3_KWARGS)
    t_fit = time.perf_counter()
    model.learn(total_timesteps=frames)
    t1 = time.perf_counter()
    env.close()

    t_eval = time.perf_counter()
    returns: list[float] = []
    for i in range(episodes):
        eval_env = gym.make(ENV_ID)
        obs, _ = eval_env.reset(seed=eval_seed + i)
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
        "versions": _versions("stable_baselines3", "torch", "gymnasium"),
    }


def worker_main(args: argparse.Namespace) -> None:
    if args.worker == "lrl":
        out = worker_lrl(args.seed, args.frames, Path(args.run_dir), args.tracking_uri, args.precision,
                         args.episodes, args.eval_seed)
    else:
        out = worker_sb3(args.seed, args.frames, args.episodes, args.eval_seed)
    Path(args.result).write_text(json.dumps(out))


# --- driver ------------------------------------------------------------------------------------------------------
def _init_tracking(work: Path, uri: str) -> None:
    """Create the MLflow database and experiment once, untimed, so no lrl run pays for the schema migration."""
    code = (f"import mlflow; c = mlflow.MlflowClient({uri!r}); "
            "c.get_experiment_by_name('lrl') or c.create_experiment('lrl')")
    subprocess.run([sys.executable, "-c", code], cwd=work, check=True, capture_output=True)


def run_one(framework: str, seed: int, args: argparse.Namespace, work: Path, uri: str) -> dict[str, Any]:
    tag = f"{framework}-seed{seed}"
    result_file, log_file = work / f"{tag}.json", work / f"{tag}.log"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", framework, "--seed", str(seed),
           "--frames", str(args.frames), "--episodes", str(args.episodes), "--eval-seed", str(args.eval_seed),
           "--result", str(result_file)]
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
    out.update({"framework": framework, "label": label, "seed": seed, "proc_s": proc_s, "load1": load1})
    return out


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def print_row(r: dict[str, Any]) -> None:
    print(f"{r['label']:<16} {r['seed']:>4} {r['frames']:>8} {r['train_s']:>8.1f} {r['fit_s']:>7.1f} "
          f"{r['call_s']:>7.1f} {r['proc_s']:>7.1f} {r['eval_s']:>6.1f} {r['load1']:>5.1f}   "
          f"{r['return_mean']:6.1f} ± {r['return_std']:5.1f}", flush=True)


def summarize(runs: list[dict[str, Any]], frames: int) -> dict[str, Any]:
    summary: dict[str, Any] = {"frames": frames, "frameworks": {}}
    labels = list(dict.fromkeys(r["label"] for r in runs))
    for label in labels:
        rs = [r for r in runs if r["label"] == label]
        summary["frameworks"][label] = {
            "runs": len(rs),
            "median_train_s": _median([r["train_s"] for r in rs]),
            "median_fit_s": _median([r["fit_s"] for r in rs]),
            "median_call_s": _median([r["call_s"] for r in rs]),
            "median_proc_s": _median([r["proc_s"] for r in rs]),
            "median_fps": _median([r["frames"] / r["train_s"] for r in rs]),
            "mean_return": statistics.fmean(r["return_mean"] for r in rs),
            "solved": sum(r["return_mean"] >= SOLVED for r in rs),
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


def print_summary(summary: dict[str, Any], seeds: int) -> None:
    print(f"\nSummary ({summary['frames']:,} frames requested, {seeds} seed(s), medians over seeds)")
    print(f"{'framework':<16} {'train_s':>8} {'fit_s':>7} {'call_s':>7} {'proc_s':>7} {'fps':>7} "
          f"{'mean return':>12} {'solved(>=475)':>14}")
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


def driver_main(args: argparse.Namespace) -> None:
    frameworks = [args.only] if args.only else list(FRAMEWORKS)
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="lrl-vs-sb3-"))
    work.mkdir(parents=True, exist_ok=True)
    work = work.resolve()
    uri = f"sqlite:///{work / 'mlflow.db'}"
    if "lrl" in frameworks:
        _init_tracking(work, uri)
    print(f"PPO CartPole-v1: lrl '{RECIPE}' vs Stable-Baselines3, {args.seeds} seed(s), {args.frames:,} frames, "
          f"{args.episodes} eval episodes (seeds {args.eval_seed}+i), cpu_count={os.cpu_count()}, "
          f"torch threads {_torch_threads()}; work dir {work}")
    print(f"{'framework':<16} {'seed':>4} {'frames':>8} {'train_s':>8} {'fit_s':>7} {'call_s':>7} {'proc_s':>7} "
          f"{'eval_s':>6} {'load1':>5}   return mean ± std", flush=True)
    runs: list[dict[str, Any]] = []
    try:
        for seed in range(args.seeds):
            order = frameworks if seed % 2 == 0 else frameworks[::-1]
            for framework in order:
                runs.append(run_one(framework, seed, args, work, uri))
                print_row(runs[-1])
    finally:
        if runs:
            summary = summarize(runs, args.frames)
            print_summary(summary, len({r["seed"] for r in runs}))
            versions: dict[str, str] = {}
            for r in runs:
                versions.update(r["versions"])
            print("versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())))
            if args.json_out:
                payload = {"config": {k: v for k, v in vars(args).items() if k not in ("worker",)},
                           "cpu_count": os.cpu_count(), "versions": versions, "runs": runs, "summary": summary}
                Path(args.json_out).write_text(json.dumps(payload, indent=2))
                print(f"results written to {args.json_out}")
        if not args.work_dir and not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    p.add_argument("--frames", type=int, default=100_000, help="training frames per run (default 100000)")
    p.add_argument("--episodes", type=int, default=20, help="deterministic evaluation episodes (default 20)")
    p.add_argument("--eval-seed", type=int, default=10_000, help="episode i is seeded eval_seed + i")
    p.add_argument("--only", choices=FRAMEWORKS, help="run one framework only")
    p.add_argument("--precision", help="lrl trainer.precision, e.g. bf16-mixed (SB3 always runs fp32)")
    p.add_argument("--json-out", help="write all runs and the summary to this JSON file")
    p.add_argument("--work-dir", help="keep run directories, logs and mlflow.db here (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the temporary work dir")
    # internal: one training run in this subprocess
    p.add_argument("--worker", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--run-dir", help=argparse.SUPPRESS)
    p.add_argument("--tracking-uri", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.seeds < 1 or args.frames < 1 or args.episodes < 1:
        p.error("--seeds, --frames and --episodes must be positive")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        worker_main(args)
    else:
        driver_main(args)


if __name__ == "__main__":
    main()
