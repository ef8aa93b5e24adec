"""Demonstrations for the behavioural-cloning tests: a scripted CartPole controller and an lrl dataset file of its
episodes, written with :func:`lrl.data.dataset.save_dataset`.

The controller pushes the cart towards the side the pole is falling to, a = 1[θ + 0.5·θ̇ > 0]: a linear rule on the
pole's angle and angular velocity that keeps CartPole-v1 up for the full 500 steps from every start (checked in
tests/unit/test_bc.py), so BC on its episodes has a perfect, deterministic expert to copy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import yaml

from lrl.data.dataset import save_dataset
from lrl.spec import spec_from_spaces
from tests.experts import cartpole_pd as cartpole_controller  # a = 1[θ + 0.5·θ̇ > 0]


def cartpole_episodes(episodes: int, seed: int = 0, max_steps: int | None = None) -> dict[str, torch.Tensor]:
    """The controller's transitions over ``episodes`` episodes (seeds ``seed + i``), in lrl's flat layout."""
    env = gym.make("CartPole-v1", max_episode_steps=max_steps) if max_steps else gym.make("CartPole-v1")
    rows: dict[str, list[Any]] = {k: [] for k in ("observation", "action", "next/observation", "next/reward",
                                                  "next/terminated", "next/truncated", "next/done")}
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        done = False
        while not done:
            action = int(cartpole_controller(obs))
            nxt, reward, term, trunc, _ = env.step(action)
            done = term or trunc
            for key, value in zip(rows, (obs, action, nxt, reward, term, trunc, done), strict=True):
                rows[key].append(value)
            obs = nxt
    env.close()
    dtypes = {"observation": torch.float32, "action": torch.int64, "next/observation": torch.float32,
              "next/reward": torch.float32}
    return {k: torch.as_tensor(np.asarray(v), dtype=dtypes.get(k, torch.bool)) for k, v in rows.items()}


def cartpole_dataset(path: Path, episodes: int = 2, seed: int = 0, max_steps: int | None = None) -> Path:
    """An lrl dataset file of the controller's episodes, with CartPole-v1's spec."""
    env = gym.make("CartPole-v1")
    spec = spec_from_spaces("CartPole-v1", env.observation_space, env.action_space)
    env.close()
    return save_dataset(path, cartpole_episodes(episodes, seed, max_steps), spec)


def pendulum_dataset(path: Path, n: int = 512, seed: int = 0) -> Path:
    """Continuous demonstrations: Pendulum-v1 states (cos θ, sin θ, θ̇) drawn at random, labelled by a linear
    controller a = clip(−(2 sin θ + 0.5 θ̇), −2, 2); for the Gaussian-policy runs (no learning bar)."""
    env = gym.make("Pendulum-v1")
    spec = spec_from_spaces("Pendulum-v1", env.observation_space, env.action_space)
    env.close()
    g = torch.Generator().manual_seed(seed)
    theta, speed = (torch.rand(n, generator=g) * 2 - 1) * np.pi, (torch.rand(n, generator=g) * 2 - 1) * 8
    obs = torch.stack([theta.cos(), theta.sin(), speed], -1)
    action = (-(2 * obs[:, 1] + 0.5 * obs[:, 2])).clamp(-2, 2)[:, None]
    return save_dataset(path, {"observation": obs, "action": action}, spec)


def bc_recipe(tmp: Path, dataset: Path, **sections: Any) -> Path:
    """A small BC recipe on an lrl dataset file (``offline`` source), evaluated in CartPole-v1; ``sections``
    replace whole top-level sections."""
    recipe: dict[str, Any] = {
        "name": "bc-test", "seed": 1,
        "algo": {"name": "bc", "lr": 3e-3, "hidden": [32, 32]},
        "env": {"id": "CartPole-v1"},
        "data": {"name": "offline", "path": str(dataset), "batch_size": 64},
        "budget": {"steps": 40},
        "trainer": {"accelerator": "cpu", "devices": 1},
        "eval": {"every": 0, "final": False},
        "checkpoint": {"every": 20},
        "tracking": {"log_every": 10},
        **sections,
    }
    path = tmp / "bc.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path
