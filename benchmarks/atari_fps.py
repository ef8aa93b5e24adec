"""Atari frames per second of the environments alone (uniformly random actions, no network): lrl's env factory
with ``env.atari`` defaults under sync and async gymnasium vectorisation, and EnvPool where it is installed.

A "frame" is one agent step of one sub-env (4 emulator frames with frame_skip 4), the unit of ``budget.frames``.

    python benchmarks/atari_fps.py                       # Pong, 8 envs, 4000 frames per cell
    python benchmarks/atari_fps.py --envs 1 2 8 --frames 8000 --game Breakout
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from lrl.data.env import make_vec_env
from lrl.recipe.schema import AtariConfig, EnvConfig


def lrl_fps(game: str, n: int, vectorization: str, frames: int) -> float:
    env = make_vec_env(EnvConfig(id=f"ALE/{game}-v5", atari=AtariConfig()), n, vectorization)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    steps = max(1, frames // n)
    env.step(rng.integers(env.single_action_space.n, size=n))  # type: ignore[attr-defined]  # workers warm
    start = time.perf_counter()
    for _ in range(steps):
        env.step(rng.integers(env.single_action_space.n, size=n))  # type: ignore[attr-defined]
    elapsed = time.perf_counter() - start
    env.close()
    return steps * n / elapsed


def envpool_fps(game: str, n: int, frames: int) -> float | str:
    try:
        import envpool
    except ImportError as err:
        return f"not installed ({err})"
    env = envpool.make(f"{game}-v5", env_type="gymnasium", num_envs=n, episodic_life=True, reward_clip=True,
                       repeat_action_probability=0.0, noop_max=30, stack_num=4, img_height=84, img_width=84)
    env.reset()
    steps = max(1, frames // n)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(steps):
        env.step(rng.integers(env.action_space.n, size=n))
    elapsed = time.perf_counter() - start
    env.close()
    return steps * n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--game", default="Pong")
    parser.add_argument("--envs", type=int, nargs="+", default=[8])
    parser.add_argument("--frames", type=int, default=4000)
    args = parser.parse_args()
    rows = []
    for n in args.envs:
        row: dict[str, object] = {"game": args.game, "envs": n, "cpus": os.cpu_count(),
                                  "load_1min": os.getloadavg()[0]}
        for vec in ("sync", "async"):
            row[vec] = round(lrl_fps(args.game, n, vec, args.frames))
        pool = envpool_fps(args.game, n, args.frames)
        row["envpool"] = round(pool) if isinstance(pool, float) else pool
        rows.append(row)
        print(json.dumps(row))


if __name__ == "__main__":
    main()
