"""Replay memory per Atari transition: lrl's frame-shared buffer, lrl's plain one, and Stable-Baselines3's
``ReplayBuffer`` with ``optimize_memory_usage=True`` (observations stored once, the next one read from the next slot).

Observations are 4×84×84 uint8 frame stacks (env.atari defaults, ALE/Pong-v5, 6 actions). lrl's numbers are the
bytes of every tensor in its TorchRL storage after filling it with real Pong rollouts (random actions, 2 envs),
divided by its capacity; SB3's are the bytes of its preallocated arrays divided by its ``buffer_size``.

    python benchmarks/atari_memory.py            # a few seconds
"""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import torch
from torchrl.data import LazyTensorStorage, ReplayBuffer

from lrl.data.collector import make_collector
from lrl.data.env import make_vec_env, probe_env_spec
from lrl.data.frames import FrameReplay
from lrl.data.replay import KEYS, UniformPolicy
from lrl.recipe.schema import AtariConfig, EnvConfig

CAPACITY = 1000


def storage_bytes(buffer: ReplayBuffer) -> int:
    data = buffer.storage._storage  # type: ignore[attr-defined]
    return sum(t.numel() * t.element_size() for t in data.values(include_nested=True, leaves_only=True))


def lrl_bytes() -> dict[str, float]:
    cfg = EnvConfig(id="ALE/Pong-v5", atari=AtariConfig())
    spec = probe_env_spec(cfg)
    collector = make_collector("lean", make_vec_env(cfg, 2), spec, UniformPolicy(spec), steps_per_env=100,
                               env_seeds=[0, 1], device=torch.device("cpu"))
    plain, shared = ReplayBuffer(storage=LazyTensorStorage(CAPACITY)), ReplayBuffer(storage=LazyTensorStorage(CAPACITY))
    frames = FrameReplay(shared, 2, 4, torch.Generator())
    for _ in range(CAPACITY // 200):
        td = collector.rollout()
        plain.extend(td.reshape(-1).select(*KEYS))
        frames.extend(td)
    collector.shutdown()
    return {"lrl_frame_shared": storage_bytes(shared) / CAPACITY, "lrl_plain": storage_bytes(plain) / CAPACITY}


def sb3_bytes() -> float:
    from stable_baselines3.common.buffers import ReplayBuffer as SB3Buffer

    obs = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    buf = SB3Buffer(CAPACITY, obs, gym.spaces.Discrete(6), device="cpu", optimize_memory_usage=True,
                    handle_timeout_termination=False)  # SB3 refuses both at once
    arrays = [buf.observations, buf.actions, buf.rewards, buf.dones, buf.timeouts]
    assert getattr(buf, "next_observations", None) is None  # optimize_memory_usage: no second copy
    return sum(a.nbytes for a in arrays) / CAPACITY


def main() -> None:
    out = {**lrl_bytes(), "sb3_optimize_memory_usage": sb3_bytes()}
    for k, v in out.items():
        print(f"{k:28s} {v:10.1f} bytes/transition")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
