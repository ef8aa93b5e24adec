"""SAC written by hand: plain PyTorch and gymnasium, no framework (the limit lrl and SB3 are measured against).

What a user would write for a continuous-action SAC in one file, eager PyTorch, one process: a gymnasium
``SyncVectorEnv`` (same-step autoreset, so an episode's last observation is in ``info["final_obs"]``), a preallocated
numpy replay buffer holding actions in [-1, 1] (as SB3, which feeds its critics that scale), uniform random actions for
the first ``learning_starts`` frames, then every ``train_freq`` env steps (once more than ``learning_starts`` frames
are stepped) ``gradient_steps`` updates of one uniformly drawn ``batch_size`` minibatch each. The actor is an MLP
trunk with linear mean and log σ heads (log σ clamped to [-20, 2]) and a tanh-squashed Gaussian (log-probability with
SB3's correction log(1 − tanh(u)² + 1e-6)); ``n_critics`` Q MLPs on (obs, action) with Polyak-averaged targets; all
with PyTorch's default initialisation, as SB3's SAC. One gradient step in SB3's order: the actor's fresh actions, α
read and then (learned α) its loss −log α·(log π + target entropy) stepped; the critics regress on
y = r + γ (1 − terminated) (min_i Q'_i(s', a') − α log π(a'|s')) (a time-limit truncation bootstraps) with the loss
Σ_i ½ MSE; the actor minimises α log π − min_i Q_i(s, a_π) with the critics after their step; then the targets move by
``tau`` (every ``target_update_interval`` gradient steps of one update phase, as SB3 counts). Separate Adam optimisers
for actor and critics (``optimizer_class`` / ``optimizer_kwargs``) and for log α (plain Adam, as SB3).

It takes the hyperparameters as ``benchmarks/vs_sb3.py`` maps a recipe for SB3's ``SAC`` (``sac_kwargs``), so the three
columns of that benchmark run one configuration. :func:`train` returns the deterministic policy (tanh of the mean,
for the shared evaluation) and the frames it stepped.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn


def _mlp(sizes: list[int], act: type[nn.Module], out: int | None) -> nn.Sequential:
    """Linear + activation per hidden layer, then a linear output layer unless ``out`` is None."""
    layers: list[nn.Module] = []
    for a, b in pairwise(sizes):
        layers += [nn.Linear(a, b), act()]
    if out is not None:
        layers.append(nn.Linear(sizes[-1], out))
    return nn.Sequential(*layers)


class Actor(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, hidden: list[int], act: type[nn.Module]) -> None:
        super().__init__()
        self.trunk = _mlp([obs_dim, *hidden], act, None)
        last = hidden[-1] if hidden else obs_dim
        self.mu, self.log_std = nn.Linear(last, act_dim), nn.Linear(last, act_dim)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised action in [-1, 1] and its log-probability."""
        h = self.trunk(obs)
        mean, log_std = self.mu(h), self.log_std(h).clamp(-20.0, 2.0)
        eps = torch.randn_like(mean)
        action = torch.tanh(mean + log_std.exp() * eps)
        logp = -0.5 * eps.pow(2) - log_std - 0.5 * math.log(2 * math.pi) - torch.log(1 - action.pow(2) + 1e-6)
        return action, logp.sum(-1)

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.mu(self.trunk(obs)))


def _q(critics: nn.ModuleList, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """The critics' values, shape (n_critics, batch)."""
    x = torch.cat([obs, action], -1)
    return torch.stack([q(x).squeeze(-1) for q in critics])


def train(kw: dict[str, Any], env_kwargs: dict[str, Any], seed: int, frames: int,
          device: str = "cpu") -> tuple[Callable[[np.ndarray], Any], int]:
    n_envs, pk = env_kwargs["n_envs"], kw["policy_kwargs"]
    envs = gym.vector.SyncVectorEnv(
        [lambda: gym.make(env_kwargs["env_id"], **env_kwargs["env_kwargs"]) for _ in range(n_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    space = envs.single_action_space
    if not isinstance(space, gym.spaces.Box):
        raise SystemExit("the reference SAC loop handles continuous (Box) actions only")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    obs_dim, act_dim = int(np.prod(envs.single_observation_space.shape or (1,))), int(np.prod(space.shape or (1,)))
    low, high = space.low.reshape(-1), space.high.reshape(-1)

    def to_env(a: np.ndarray) -> np.ndarray:  # [-1, 1] -> the env's bounds
        return (low + 0.5 * (a + 1.0) * (high - low)).reshape(*a.shape[:-1], *space.shape)

    actor = Actor(obs_dim, act_dim, pk["net_arch"]["pi"], pk["activation_fn"]).to(device)
    critics = nn.ModuleList(_mlp([obs_dim + act_dim, *pk["net_arch"]["qf"]], pk["activation_fn"], 1)
                            for _ in range(pk["n_critics"])).to(device)
    critics_target = copy.deepcopy(critics).requires_grad_(False)
    lr = float(kw["learning_rate"])
    actor_opt = pk["optimizer_class"](actor.parameters(), lr=lr, **pk["optimizer_kwargs"])
    critic_opt = pk["optimizer_class"](critics.parameters(), lr=lr, **pk["optimizer_kwargs"])
    ent_coef = kw["ent_coef"]  # "auto", "auto_<init>" (learned α) or a fixed float
    learn_alpha = isinstance(ent_coef, str) and ent_coef.startswith("auto")
    alpha0 = (float(ent_coef.split("_")[1]) if "_" in ent_coef else 1.0) if learn_alpha else float(ent_coef)
    log_alpha = torch.tensor(math.log(alpha0), device=device, requires_grad=learn_alpha)
    alpha_opt = torch.optim.Adam([log_alpha], lr=lr)
    target_entropy = -float(act_dim) if kw["target_entropy"] == "auto" else float(kw["target_entropy"])

    size = min(kw["buffer_size"], frames + n_envs * kw["train_freq"])
    obs_buf = np.zeros((size, obs_dim), np.float32)
    next_buf = np.zeros((size, obs_dim), np.float32)
    act_buf = np.zeros((size, act_dim), np.float32)
    rew_buf = np.zeros(size, np.float32)
    term_buf = np.zeros(size, np.float32)
    gamma, tau, batch = kw["gamma"], kw["tau"], kw["batch_size"]

    obs, _ = envs.reset(seed=seed)
    obs = obs.reshape(n_envs, obs_dim)
    step, stored = 0, 0
    while step < frames:
        # --- collection: train_freq env steps of n_envs frames each
        for _ in range(kw["train_freq"]):
            if step < kw["learning_starts"]:
                action = rng.uniform(-1.0, 1.0, (n_envs, act_dim)).astype(np.float32)
            else:
                with torch.no_grad():
                    action = actor(torch.as_tensor(obs, dtype=torch.float32, device=device))[0].cpu().numpy()
            next_obs, reward, terminated, truncated, info = envs.step(to_env(action))
            next_obs = next_obs.reshape(n_envs, obs_dim)
            real_next = next_obs.copy()  # the true last observation of an episode that just ended
            for i in np.flatnonzero(terminated | truncated):
                real_next[i] = np.reshape(info["final_obs"][i], -1)
            i = (stored + np.arange(n_envs)) % size
            obs_buf[i], next_buf[i], act_buf[i], rew_buf[i], term_buf[i] = obs, real_next, action, reward, terminated
            stored, step, obs = stored + n_envs, step + n_envs, next_obs
        if step <= kw["learning_starts"]:
            continue
        # --- update phase: gradient_steps minibatches (-1: as many as env frames collected, as SB3)
        n_updates = kw["gradient_steps"] if kw["gradient_steps"] >= 0 else kw["train_freq"] * n_envs
        for g in range(n_updates):
            idx = rng.integers(0, min(stored, size), batch)
            o, a, o2, r, term = (torch.as_tensor(b[idx], device=device)
                                 for b in (obs_buf, act_buf, next_buf, rew_buf, term_buf))
            a_pi, logp = actor(o)
            alpha = log_alpha.detach().exp()  # read before its update, as SB3
            if learn_alpha:
                alpha_loss = -(log_alpha * (logp + target_entropy).detach()).mean()
                alpha_opt.zero_grad()
                alpha_loss.backward()
                alpha_opt.step()
            with torch.no_grad():
                a2, logp2 = actor(o2)
                y = r + gamma * (1.0 - term) * (_q(critics_target, o2, a2).min(0).values - alpha * logp2)
            critic_loss = 0.5 * (_q(critics, o, a) - y).pow(2).mean(-1).sum()
            critic_opt.zero_grad()
            critic_loss.backward()
            critic_opt.step()
            actor_loss = (alpha * logp - _q(critics, o, a_pi).min(0).values).mean()
            actor_opt.zero_grad()
            actor_loss.backward()
            actor_opt.step()
            if g % kw["target_update_interval"] == 0:
                with torch.no_grad():
                    for t, p in zip(critics_target.parameters(), critics.parameters(), strict=True):
                        t.lerp_(p, tau)
    envs.close()

    def policy(o: np.ndarray) -> Any:
        with torch.no_grad():
            x = torch.as_tensor(o, dtype=torch.float32, device=device).reshape(1, obs_dim)
            return to_env(actor.deterministic(x).cpu().numpy())[0]

    return policy, step
