"""Standalone GCSL prototype on PointMaze_UMaze-v3 (plain torch + gymnasium, no lrl plumbing).

Goal-conditioned supervised learning, iterated (Ghosh et al. 2019; Levine CS285 §2.2): start from a random
policy, collect episodes aimed at the environment's goals, relabel every transition with a goal the episode
actually reached (hindsight), regress the actions taken onto (state, relabelled goal), repeat. This script exists
to find settings that work before they are wired into lrl's `hindsight` source; it mirrors that source's choices
(relabel once when an episode is aggregated, a FIFO cap, K gradient steps per round, Gaussian action noise during
collection, deterministic evaluation on the same 100 episodes every round) so that what it measures carries over.
Each run prints the success rate per round and, for the last evaluation, successes per (start cell, goal cell).

The settings that reach 0.95+ (docs/gcbc.md has the curves of the others):

    OMP_NUM_THREADS=1 python benchmarks/gcsl_prototype.py --seed 0 --rounds 15 --head linear --noise 0.3 \
        --collect-continuing --window0 50 --window 150
"""

from __future__ import annotations

import argparse
import json
import time

import gymnasium as gym
import gymnasium_robotics
import numpy as np
import torch
from torch import nn

gym.register_envs(gymnasium_robotics)


def make_envs(n: int, seed: int, max_steps: int | None, continuing: bool = False) -> list[gym.Env]:
    """Evaluation always ends an episode at its goal (continuing_task=False); collection may go on to a new goal
    each time one is reached (continuing_task=True, reset_target=True), so that trajectories run past goals."""
    kwargs: dict = {"continuing_task": continuing, "reset_target": continuing}
    if max_steps is not None:
        kwargs["max_episode_steps"] = max_steps
    envs = [gym.make("PointMaze_UMaze-v3", **kwargs) for _ in range(n)]
    for i, env in enumerate(envs):
        env.reset(seed=seed * 1000 + i)
        env.action_space.seed(seed * 1000 + i)
    return envs


def flat(obs: dict) -> np.ndarray:
    return np.concatenate([obs["observation"], obs["desired_goal"]]).astype(np.float32)


def rollout(envs, policy, n_episodes: int, noise: float, random: bool, rng: np.random.Generator,
            seeds: list[int] | None = None, store_unclipped: bool = False):
    """Run `n_episodes` episodes (several envs stepped in lockstep so the policy is batched); episode i is reset
    with ``seeds[i]`` when given (evaluation: the same episodes every round)."""
    episodes, successes = [], []
    while len(episodes) < n_episodes:
        k = min(len(envs), n_episodes - len(episodes))
        base = len(episodes)
        obs = [env.reset(seed=None if seeds is None else seeds[base + i])[0] for i, env in enumerate(envs[:k])]
        bufs = [{"obs": [o["observation"]], "ach": [o["achieved_goal"]], "act": [], "des": o["desired_goal"]}
                for o in obs]
        starts = [(o["achieved_goal"].copy(), o["desired_goal"].copy()) for o in obs]
        live = list(range(k))
        succ = [False] * k
        while live:
            if random:
                acts = rng.uniform(-1, 1, size=(len(live), 2)).astype(np.float32)
            else:
                x = torch.as_tensor(np.stack([flat(obs[i]) for i in live]))
                with torch.no_grad():
                    acts = policy(x).numpy()
                acts = (acts + noise * rng.standard_normal(acts.shape)).astype(np.float32)
                if not store_unclipped:  # else: the chosen action is stored, the env executes it clipped
                    acts = np.clip(acts, -1, 1)
            still = []
            for j, i in enumerate(live):
                o, _, term, trunc, info = envs[i].step(np.clip(acts[j], -1, 1))
                b = bufs[i]
                b["act"].append(acts[j])
                b["obs"].append(o["observation"])
                b["ach"].append(o["achieved_goal"])
                obs[i] = o
                succ[i] = succ[i] or bool(info["success"])
                if not (term or trunc):
                    still.append(i)
            live = still
        for b in bufs:
            episodes.append({k2: np.asarray(v, dtype=np.float32) for k2, v in b.items()})
        successes += succ
        for (a0, g0), ok in zip(starts, succ, strict=True):
            TRACE.append((cell(a0), cell(g0), ok))
    return episodes, float(np.mean(successes))


TRACE: list = []


def cell(xy: np.ndarray) -> tuple[int, int]:
    """(row, col) of the UMaze cell holding an (x, y) point (maze centred on the origin, unit cells)."""
    return round(float(2 - xy[1])), round(float(xy[0] + 2))


def relabel(ep: dict, mode: str, rng: np.random.Generator, window: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(inputs [T, 6], actions [T, 2]) with goal = final achieved goal, or achieved goal at t' ~ U{t+1..T}
    (U{t+1..min(T, t+window)} with a window)."""
    T = len(ep["act"])
    if mode == "final":
        idx = np.full(T, T)
    else:
        hi = np.full(T, T) if not window else np.minimum(np.arange(T) + window, T)
        if mode == "log":  # offset log-uniform in [1, hi - t]: every time scale gets the same share of goals
            span = hi - np.arange(T)
            idx = np.arange(T) + np.minimum(np.floor(np.exp(rng.uniform(0, np.log(span + 1)))), span).astype(int)
            idx = np.maximum(idx, np.arange(T) + 1)
        else:
            idx = rng.integers(np.arange(T) + 1, hi + 1)
    goals = ep["ach"][idx]
    return np.concatenate([ep["obs"][:T], goals], axis=1), ep["act"]


def evaluate(envs, policy, n: int, noise: float = 0.0) -> float:
    TRACE.clear()
    _, s = rollout(envs, policy, n, noise=noise, random=False, rng=np.random.default_rng(0),
                   seeds=[1_000_000 + i for i in range(n)])
    return s


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--episodes", type=int, default=20, help="episodes collected per round")
    p.add_argument("--episodes0", type=int, default=0, help="random episodes in round 0 (0: --episodes)")
    p.add_argument("--steps", type=int, default=500, help="gradient steps per round")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--noise", type=float, default=0.3)
    p.add_argument("--mode", default="future", choices=["final", "future", "log"])
    p.add_argument("--resample", action="store_true", help="redraw future goals every batch (not lrl's design)")
    p.add_argument("--window", type=int, default=0, help="future goals at most this many steps ahead (0: any)")
    p.add_argument("--head", default="tanh", choices=["tanh", "linear"], help="linear: lrl bc's Gaussian mean")
    p.add_argument("--activation", default="relu", choices=["relu", "tanh"])
    p.add_argument("--unclipped", action="store_true", help="store the noisy action before clipping to the bounds")
    p.add_argument("--window0", type=int, default=None, help="the window of the random round (default: --window)")
    p.add_argument("--collect-continuing", action="store_true", help="collect with continuing_task/reset_target")
    p.add_argument("--max-transitions", type=int, default=0)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--eval-episodes", type=int, default=100)
    p.add_argument("--envs", type=int, default=10)
    p.add_argument("--eval-noise", type=float, default=0.0, help="evaluate the stochastic policy (Gaussian std)")
    a = p.parse_args()

    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    envs = make_envs(a.envs, a.seed, a.max_steps, a.collect_continuing)
    eval_envs = make_envs(a.envs, 10_000 + a.seed, a.max_steps)
    act = {"relu": nn.ReLU, "tanh": nn.Tanh}[a.activation]
    layers = [nn.Linear(6, a.hidden), act(), nn.Linear(a.hidden, a.hidden), act(), nn.Linear(a.hidden, 2)]
    if a.head == "tanh":
        layers.append(nn.Tanh())
    policy = nn.Sequential(*layers)
    opt = torch.optim.Adam(policy.parameters(), lr=a.lr)
    X = np.zeros((0, 6), np.float32)
    Y = np.zeros((0, 2), np.float32)
    eps_all: list[dict] = []
    curve = []
    t0 = time.time()
    for r in range(a.rounds):
        n_eps = a.episodes0 if (r == 0 and a.episodes0) else a.episodes
        eps, coll = rollout(envs, policy, n_eps, a.noise, random=(r == 0), rng=rng, store_unclipped=a.unclipped)
        eps_all += eps
        window = a.window0 if (r == 0 and a.window0 is not None) else a.window
        for ep in eps:
            x, y = relabel(ep, a.mode, rng, window)
            X = np.concatenate([X, x])
            Y = np.concatenate([Y, y])
        if a.max_transitions and len(X) > a.max_transitions:
            X, Y = X[-a.max_transitions:], Y[-a.max_transitions:]
        if a.resample:
            pairs = [relabel(ep, a.mode, rng, a.window) for ep in eps_all]
        Xt, Yt = torch.as_tensor(X), torch.as_tensor(Y)
        for _ in range(a.steps):
            if a.resample and _ % 50 == 0:
                pairs = [relabel(ep, a.mode, rng, a.window) for ep in eps_all]
                Xt = torch.as_tensor(np.concatenate([q[0] for q in pairs]))
                Yt = torch.as_tensor(np.concatenate([q[1] for q in pairs]))
            i = torch.randint(len(Xt), (a.batch,))
            loss = ((policy(Xt[i]) - Yt[i]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        ev = evaluate(eval_envs, policy, a.eval_episodes, a.eval_noise)
        curve.append(ev)
        print(f"round {r:3d} data {len(X):7d} collect_success {coll:.2f} loss {loss.item():.4f} "
              f"eval_success {ev:.2f} t {time.time() - t0:.0f}s", flush=True)
    fails: dict = {}
    for a0, g0, ok in TRACE:
        fails.setdefault((a0, g0), []).append(ok)
    table = {f"{k}": f"{sum(v)}/{len(v)}" for k, v in sorted(fails.items())}
    print("last evaluation, per (start cell, goal cell): successes/episodes", table)
    print(json.dumps({"args": vars(a), "curve": curve}))


if __name__ == "__main__":
    main()
