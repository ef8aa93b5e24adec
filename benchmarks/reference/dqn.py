"""DQN written by hand: plain PyTorch and gymnasium, no framework (the limit lrl and SB3 are measured against).

What a user would write for DQN in one file, eager PyTorch, one process, one env: a Q MLP (PyTorch's default
initialisation) and a target copy, a preallocated numpy replay buffer, uniform random actions for the first
``learning_starts`` frames, then ε-greedy with ε linear from ``exploration_initial_eps`` to
``exploration_final_eps`` over ``exploration_fraction`` of the budget; every ``train_freq`` frames, ``gradient_steps``
updates of one ``batch_size`` minibatch each: y = r + γ (1 − terminated) max_a' Q'(s', a') (a time-limit truncation
bootstraps from the last observation), the Huber loss, Adam with global gradient-norm clipping and the learning rate
set once per update phase from the fraction of the budget left. The target network is copied (or Polyak-averaged
with ``tau``) every ``target_update_interval`` frames, counted during collection as SB3 does.

It takes the hyperparameters as ``benchmarks/vs_sb3.py`` maps a recipe for SB3's ``DQN`` (``dqn_kwargs``), so the three
columns of that benchmark run one configuration. :func:`train` returns the greedy policy (for the shared evaluation)
and the frames it stepped.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _value(x: Any, progress_remaining: float) -> float:
    return float(x(progress_remaining)) if callable(x) else float(x)


def _mlp(sizes: list[int], act: type[nn.Module], out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in pairwise(sizes):
        layers += [nn.Linear(a, b), act()]
    layers.append(nn.Linear(sizes[-1], out))
    return nn.Sequential(*layers)


def train(kw: dict[str, Any], env_kwargs: dict[str, Any], seed: int, frames: int,
          device: str = "cpu") -> tuple[Callable[[np.ndarray], Any], int]:
    if env_kwargs["n_envs"] != 1:
        raise SystemExit("the reference DQN loop steps one env")
    env = gym.make(env_kwargs["env_id"], **env_kwargs["env_kwargs"])
    if not isinstance(env.action_space, gym.spaces.Discrete):
        raise SystemExit("the reference DQN loop handles discrete actions only")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    env.action_space.seed(seed)
    obs_dim, n_actions = int(np.prod(env.observation_space.shape or (1,))), int(env.action_space.n)
    pk = kw["policy_kwargs"]
    q = _mlp([obs_dim, *pk["net_arch"]], pk["activation_fn"], n_actions).to(device)
    q_target = _mlp([obs_dim, *pk["net_arch"]], pk["activation_fn"], n_actions).to(device)
    q_target.load_state_dict(q.state_dict())
    q_target.requires_grad_(False)
    opt = pk["optimizer_class"](q.parameters(), lr=_value(kw["learning_rate"], 1.0), **pk["optimizer_kwargs"])

    size = min(kw["buffer_size"], frames)
    obs_buf = np.zeros((size, obs_dim), np.float32)
    next_buf = np.zeros((size, obs_dim), np.float32)
    act_buf = np.zeros(size, np.int64)
    rew_buf = np.zeros(size, np.float32)
    term_buf = np.zeros(size, np.float32)
    gamma, tau, batch = kw["gamma"], kw["tau"], kw["batch_size"]
    eps0, eps1, fraction = kw["exploration_initial_eps"], kw["exploration_final_eps"], kw["exploration_fraction"]

    obs, _ = env.reset(seed=seed)
    step, stored = 0, 0
    while step < frames:
        # --- collection: train_freq frames
        for _ in range(kw["train_freq"]):
            done_fraction = step / frames
            eps = eps0 + (eps1 - eps0) * min(1.0, done_fraction / fraction)
            if step < kw["learning_starts"] or rng.random() < eps:
                action = int(env.action_space.sample())
            else:
                with torch.no_grad():
                    x = torch.as_tensor(obs, dtype=torch.float32, device=device)
                    action = int(q(x[None]).argmax(-1).item())
            next_obs, reward, terminated, truncated, _ = env.step(action)
            i = stored % size
            obs_buf[i], next_buf[i], act_buf[i] = obs, next_obs, action
            rew_buf[i], term_buf[i] = reward, float(terminated)
            stored, step = stored + 1, step + 1
            obs = env.reset()[0] if terminated or truncated else next_obs
            if step % kw["target_update_interval"] == 0:
                with torch.no_grad():
                    for tp, op in zip(q_target.parameters(), q.parameters(), strict=True):
                        tp.mul_(1 - tau).add_(op, alpha=tau)
        if step < kw["learning_starts"]:
            continue
        # --- update phase: gradient_steps minibatches
        for group in opt.param_groups:
            group["lr"] = _value(kw["learning_rate"], 1.0 - step / frames)
        for _ in range(kw["gradient_steps"]):
            idx = rng.integers(0, min(stored, size), batch)
            o, a = torch.as_tensor(obs_buf[idx], device=device), torch.as_tensor(act_buf[idx], device=device)
            o2, r = torch.as_tensor(next_buf[idx], device=device), torch.as_tensor(rew_buf[idx], device=device)
            term = torch.as_tensor(term_buf[idx], device=device)
            with torch.no_grad():
                y = r + gamma * (1.0 - term) * q_target(o2).max(-1).values
            loss = F.smooth_l1_loss(q(o).gather(-1, a[:, None]).squeeze(-1), y)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(q.parameters(), kw["max_grad_norm"])
            opt.step()
    env.close()

    def policy(o: np.ndarray) -> Any:
        with torch.no_grad():
            x = torch.as_tensor(o, dtype=torch.float32, device=device)
            return int(q(x[None]).argmax(-1).item())

    return policy, step
