"""PPO written by hand: plain PyTorch and gymnasium, no framework (the limit lrl and SB3 are measured against).

What a user would write for a discrete-action PPO in one file, eager PyTorch, one process: a gymnasium
``SyncVectorEnv`` (same-step autoreset, so an episode's last observation is in ``info["final_obs"]``), separate actor
and critic MLPs with orthogonal initialisation (gains √2, 0.01 for the policy head, 1 for the value head, as SB3 and
lrl), Adam, GAE(λ) with the value of the last observation bootstrapped on a time-limit truncation (as SB3: the reward
of that step gets γ·V(final obs)), per-minibatch advantage normalisation, the clipped surrogate, an optionally
clipped value loss, an entropy bonus, global gradient-norm clipping, linear learning-rate and clip-range schedules
and an early stop on the approximate KL.

It takes the hyperparameters as ``benchmarks/vs_sb3.py`` maps a recipe for SB3's ``PPO`` (``ppo_kwargs``), so the three
columns of that benchmark run one configuration. :func:`train` returns the deterministic policy (for the shared
evaluation) and the frames it stepped.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn


def _value(x: Any, progress_remaining: float) -> float:
    return float(x(progress_remaining)) if callable(x) else float(x)


def _mlp(sizes: list[int], act: type[nn.Module], out: int, gain: float, ortho: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in pairwise(sizes):
        layers += [nn.Linear(a, b), act()]
    layers.append(nn.Linear(sizes[-1], out))
    if ortho:
        for i, layer in enumerate(m for m in layers if isinstance(m, nn.Linear)):
            last = i == len(sizes) - 1
            nn.init.orthogonal_(layer.weight, gain if last else np.sqrt(2))
            nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)


def train(kw: dict[str, Any], env_kwargs: dict[str, Any], seed: int, frames: int,
          device: str = "cpu") -> tuple[Callable[[np.ndarray], Any], int]:
    n_envs, n_steps = env_kwargs["n_envs"], kw["n_steps"]
    gamma, lam = kw["gamma"], kw["gae_lambda"]
    pk = kw["policy_kwargs"]
    envs = gym.vector.SyncVectorEnv(
        [lambda: gym.make(env_kwargs["env_id"], **env_kwargs["env_kwargs"]) for _ in range(n_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    if not isinstance(envs.single_action_space, gym.spaces.Discrete):
        raise SystemExit("the reference PPO loop handles discrete actions only")
    torch.manual_seed(seed)
    obs_dim = int(np.prod(envs.single_observation_space.shape or (1,)))
    n_actions = int(envs.single_action_space.n)
    hidden_pi, hidden_vf = pk["net_arch"]["pi"], pk["net_arch"]["vf"]
    actor = _mlp([obs_dim, *hidden_pi], pk["activation_fn"], n_actions, 0.01, pk["ortho_init"]).to(device)
    critic = _mlp([obs_dim, *hidden_vf], pk["activation_fn"], 1, 1.0, pk["ortho_init"]).to(device)
    params = [*actor.parameters(), *critic.parameters()]
    opt = pk["optimizer_class"](params, lr=_value(kw["learning_rate"], 1.0), **pk["optimizer_kwargs"])

    obs_buf = torch.zeros(n_steps, n_envs, obs_dim, device=device)
    act_buf = torch.zeros(n_steps, n_envs, dtype=torch.long, device=device)
    logp_buf = torch.zeros(n_steps, n_envs, device=device)
    rew_buf = torch.zeros(n_steps, n_envs, device=device)
    done_buf = torch.zeros(n_steps, n_envs, device=device)
    val_buf = torch.zeros(n_steps, n_envs, device=device)

    obs_np, _ = envs.reset(seed=seed)
    obs = torch.as_tensor(obs_np, dtype=torch.float32, device=device)
    done = torch.zeros(n_envs, device=device)
    batch = n_steps * n_envs
    mb = kw["batch_size"]
    step = 0
    while step < frames:
        remaining = 1.0 - step / frames
        lr, clip = _value(kw["learning_rate"], remaining), _value(kw["clip_range"], remaining)
        clip_vf = None if kw["clip_range_vf"] is None else _value(kw["clip_range_vf"], remaining)
        for group in opt.param_groups:
            group["lr"] = lr
        # --- rollout
        with torch.no_grad():
            for t in range(n_steps):
                logits = actor(obs)
                action = torch.distributions.Categorical(logits=logits).sample()
                obs_buf[t], act_buf[t], val_buf[t] = obs, action, critic(obs).squeeze(-1)
                logp_buf[t] = torch.log_softmax(logits, -1).gather(-1, action[:, None]).squeeze(-1)
                done_buf[t] = done
                obs_np, reward, terminated, truncated, info = envs.step(action.cpu().numpy())
                reward = reward.astype(np.float32)
                for i in np.flatnonzero(truncated & ~terminated):  # time limit: bootstrap from the last obs
                    final = torch.as_tensor(info["final_obs"][i], dtype=torch.float32, device=device)
                    reward[i] += gamma * critic(final).item()
                rew_buf[t] = torch.as_tensor(reward, device=device)
                obs = torch.as_tensor(obs_np, dtype=torch.float32, device=device)
                done = torch.as_tensor(terminated | truncated, dtype=torch.float32, device=device)
            step += batch
            # --- GAE(λ): done_buf[t] says whether obs_buf[t] starts a new episode
            last_value = critic(obs).squeeze(-1)
            adv = torch.zeros(n_steps, n_envs, device=device)
            gae = torch.zeros(n_envs, device=device)
            for t in reversed(range(n_steps)):
                next_value = last_value if t == n_steps - 1 else val_buf[t + 1]
                not_done = 1.0 - (done if t == n_steps - 1 else done_buf[t + 1])
                delta = rew_buf[t] + gamma * next_value * not_done - val_buf[t]
                gae = delta + gamma * lam * not_done * gae
                adv[t] = gae
            ret = adv + val_buf
        b_obs, b_act, b_logp = obs_buf.reshape(batch, -1), act_buf.reshape(batch), logp_buf.reshape(batch)
        b_adv, b_ret, b_val = adv.reshape(batch), ret.reshape(batch), val_buf.reshape(batch)
        # --- update
        for _ in range(kw["n_epochs"]):
            stop = False
            for idx in torch.randperm(batch, device=device).split(mb):
                logits = actor(b_obs[idx])
                logp_all = torch.log_softmax(logits, -1)
                logp = logp_all.gather(-1, b_act[idx, None]).squeeze(-1)
                entropy = -(logp_all.exp() * logp_all).sum(-1).mean()
                a = b_adv[idx]
                if kw["normalize_advantage"] and len(idx) > 1:
                    a = (a - a.mean()) / (a.std() + 1e-8)
                log_ratio = logp - b_logp[idx]
                ratio = log_ratio.exp()
                pg_loss = -torch.min(a * ratio, a * ratio.clamp(1 - clip, 1 + clip)).mean()
                v = critic(b_obs[idx]).squeeze(-1)
                if clip_vf is not None:
                    v = b_val[idx] + (v - b_val[idx]).clamp(-clip_vf, clip_vf)
                v_loss = (b_ret[idx] - v).pow(2).mean()
                loss = pg_loss + kw["vf_coef"] * v_loss - kw["ent_coef"] * entropy
                if kw["target_kl"] is not None:
                    with torch.no_grad():
                        approx_kl = ((ratio - 1) - log_ratio).mean().item()
                    if approx_kl > 1.5 * kw["target_kl"]:
                        stop = True
                        break
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(params, kw["max_grad_norm"])
                opt.step()
            if stop:
                break
    envs.close()

    def policy(o: np.ndarray) -> Any:
        with torch.no_grad():
            x = torch.as_tensor(o, dtype=torch.float32, device=device)
            return int(actor(x[None]).argmax(-1).item())

    return policy, step
