"""Scaling curves (issue 15 item 4): collector frames/s against ``num_envs``, and start-up latency.

1. CartPole-v1, ``num_envs`` = 1 … 256, one torch thread, ~8k frames per point after one warm-up rollout:
   * ``gymnasium`` — the bare ``SyncVectorEnv`` loop with random actions (the ceiling: env stepping alone);
   * ``gymnasium + policy`` — the same loop acting with ppo/cartpole's 64×64 actor-critic by hand (sample under
     ``no_grad``, numpy ↔ torch each step): what a hand-written collector costs;
   * ``lrl`` — lrl's lean collector (``lrl.data.collector``) with the same network, building the rollout TensorDict
     (observations, actions, log-probabilities, rewards, flags, final observations of ended episodes).
2. Start-up: wall-clock of ``lrl ls``, ``lrl train ppo/cartpole --dry-run`` and, as the floor, ``python -c "import
   torch"`` — fresh processes, median of ``--reps``.
3. ``--ddp``: the same global experiment (``ppo/cartpole``, 100k frames, 8 envs, minibatch 256 — global numbers, so
   2 processes run 4 envs and 128-sample shards each) on 1 and 2 CPU DDP processes (``trainer.devices``, gloo),
   alternating, ``--reps`` each: wall-clock of the whole ``lrl train`` process and the return of the final policy
   (20 deterministic episodes, seeds 1000…). Needs one free core per process to mean anything: the load is recorded.

Writes ``benchmarks/results/scaling.json`` and ``benchmarks/results/scaling-collector.png`` (``--ddp``:
``scaling-ddp.json`` and ``scaling-ddp.png`` instead).

    LRL_NUM_THREADS=1 python benchmarks/scaling.py            # ~2 minutes on one idle core
    LRL_NUM_THREADS=1 python benchmarks/scaling.py --ddp      # ~4 minutes per repetition on two idle cores
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent
ENVS = [1, 2, 4, 8, 16, 32, 64, 128, 256]


def _frames_per_s(step: object, n: int, frames: int) -> float:
    steps = max(1, frames // n)
    start = time.perf_counter()
    for _ in range(steps):
        step()  # type: ignore[operator]
    return steps * n / (time.perf_counter() - start)


def _bare_loops(n: int, frames: int, policy: torch.nn.Module) -> tuple[float, float]:
    """frames/s of gymnasium's own vector loop: random actions, then acting with ``policy`` by hand."""
    import gymnasium as gym

    bare = gym.make_vec("CartPole-v1", num_envs=n, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP})
    bare.reset(seed=0)
    bare.action_space.seed(0)
    random_fps = _frames_per_s(lambda: bare.step(bare.action_space.sample()), n, frames)
    obs, _ = bare.reset(seed=0)
    gen = torch.Generator().manual_seed(0)

    def by_hand() -> None:
        nonlocal obs
        with torch.no_grad():
            act = policy(torch.as_tensor(obs, dtype=torch.float32), gen)["action"]
        obs, *_ = bare.step(act.numpy())

    policy_fps = _frames_per_s(by_hand, n, frames)
    bare.close()
    return random_fps, policy_fps


def collector_curve(frames: int) -> dict[str, list[float]]:
    from lrl.data.collector import make_collector
    from lrl.data.env import make_vec_env, probe_env_spec
    from lrl.networks import ActorCritic, SamplingPolicy
    from lrl.recipe import load

    out: dict[str, list[float]] = {"gymnasium": [], "gymnasium + policy": [], "lrl": []}
    for n in ENVS:
        recipe = load("ppo/cartpole", [f"env.num_envs={n}", f"data.frames_per_batch={n * max(1, 1024 // n)}"])
        assert recipe.env is not None
        spec = probe_env_spec(recipe.env)
        net = ActorCritic(spec, [64, 64], "tanh", False, 0.0, True, None)

        bare_fps, by_hand_fps = _bare_loops(n, frames, SamplingPolicy(net))
        out["gymnasium"].append(bare_fps)
        out["gymnasium + policy"].append(by_hand_fps)

        steps = max(1, 1024 // n)
        col = make_collector("lean", make_vec_env(recipe.env, n), spec, SamplingPolicy(net), steps_per_env=steps,
                             env_seeds=list(range(n)), device="cpu")
        col.rollout()  # warm-up
        rollouts = max(1, frames // (steps * n))
        start = time.perf_counter()
        for _ in range(rollouts):
            col.rollout()
        out["lrl"].append(rollouts * steps * n / (time.perf_counter() - start))
        col.shutdown()
        print(f"num_envs {n:4d}: " + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in out.items()), flush=True)
    return out


def startup(reps: int) -> dict[str, float]:
    env = {**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true"}
    lrl = [sys.executable, "-c", "from lrl.cli import app; app()"]
    cases = {"python -c 'import torch'": [sys.executable, "-c", "import torch"], "lrl ls": [*lrl, "ls"],
             "lrl train ppo/cartpole --dry-run": [*lrl, "train", "ppo/cartpole", "--dry-run"]}
    out = {}
    for name, cmd in cases.items():
        walls = []
        for _ in range(reps):
            start = time.perf_counter()
            subprocess.run(cmd, env=env, check=True, capture_output=True, cwd="/tmp")
            walls.append(time.perf_counter() - start)
        out[name] = statistics.median(walls)
        print(f"{name}: {out[name]:.2f} s (median of {reps})", flush=True)
    return out


def ddp_runs(reps: int, frames: int) -> list[dict[str, float]]:
    """``lrl train ppo/cartpole`` on 1 and 2 DDP processes, alternating: wall-clock and final return per run."""
    import tempfile

    from lrl.launch import evaluate_run

    work = Path(tempfile.mkdtemp(prefix="lrl-ddp-"))
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work}/mlflow.db"}
    quiet = [f"budget.frames={frames}", "trainer.accelerator=cpu", "eval.every=0", "eval.final=false",
             "checkpoint.every=0"]
    runs = []
    for rep in range(reps):
        for devices in (1, 2):
            run_dir = work / f"d{devices}-{rep}"
            ddp = ["trainer.strategy=ddp"] if devices > 1 else []
            load = os.getloadavg()[0]
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "lrl.cli", "train", "ppo/cartpole", f"trainer.devices={devices}",
                            *ddp, *quiet, "--run-dir", str(run_dir)], env=env, check=True, capture_output=True,
                           cwd=work)
            wall = time.perf_counter() - start
            ret = float(evaluate_run(run_dir, episodes=20, seed=1000)["return_mean"])
            runs.append({"devices": devices, "rep": rep, "wall_s": wall, "return": ret, "load1_before": load})
            print(f"{devices} process(es), rep {rep}: {wall:.1f} s, return {ret:.1f} (load1 {load:.2f})", flush=True)
    return runs


def plot_ddp(runs: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(7.0, 3.4))
    for devices in (1, 2):
        mine = [r for r in runs if r["devices"] == devices]
        a1.scatter([devices] * len(mine), [r["wall_s"] for r in mine], label=f"{devices} process(es)")
        a2.scatter([devices] * len(mine), [r["return"] for r in mine])
    for ax, label in ((a1, "wall-clock of lrl train (s)"), (a2, "final return (20 episodes)")):
        ax.set_xticks([1, 2])
        ax.set_xlim(0.5, 2.5)
        ax.set_xlabel("DDP processes (CPU, gloo)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    a1.set_ylim(bottom=0)
    fig.suptitle("ppo/cartpole, the same global experiment")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot(curve: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for name, fps in curve.items():
        ax.plot(ENVS, fps, marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("num_envs (CartPole-v1, sync)")
    ax.set_ylabel("frames / s (one thread)")
    ax.set_title("Collection throughput")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=8192, help="frames per point")
    ap.add_argument("--reps", type=int, default=3, help="start-up repetitions")
    ap.add_argument("--out", type=Path, default=ROOT / "results")
    ap.add_argument("--ddp", action="store_true", help="time 1 vs 2 DDP processes instead (section 3)")
    ap.add_argument("--ddp-frames", type=int, default=100_000)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("LRL_NUM_THREADS", "1")))
    np.random.seed(0)
    if args.ddp:
        runs = ddp_runs(args.reps, args.ddp_frames)
        args.out.mkdir(parents=True, exist_ok=True)
        summary = {str(d): {"wall_s_median": statistics.median(r["wall_s"] for r in runs if r["devices"] == d),
                            "return_median": statistics.median(r["return"] for r in runs if r["devices"] == d)}
                   for d in (1, 2)}
        record = {"recipe": "ppo/cartpole", "frames": args.ddp_frames, "runs": runs, "summary": summary,
                  "cpu_count": os.cpu_count(), "threads_per_process": torch.get_num_threads()}
        (args.out / "scaling-ddp.json").write_text(json.dumps(record, indent=1) + "\n")
        plot_ddp(runs, args.out / "scaling-ddp.png")
        print(json.dumps(summary))
        return 0
    curve = collector_curve(args.frames)
    starts = startup(args.reps)
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"num_envs": ENVS, "frames_per_s": curve, "startup_s": starts, "load1": os.getloadavg()[0],
              "cpu_count": os.cpu_count(), "threads": torch.get_num_threads()}
    (args.out / "scaling.json").write_text(json.dumps(record, indent=1) + "\n")
    plot(curve, args.out / "scaling-collector.png")
    print(f"wrote {args.out / 'scaling.json'} and {args.out / 'scaling-collector.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
