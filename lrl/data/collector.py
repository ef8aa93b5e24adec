"""A lean in-process TorchRL collector over a gymnasium vector env.

It subclasses :class:`torchrl.collectors.BaseCollector` and yields rollouts in TorchRL's layout, shape
``[num_envs, T]`` (env batch first, time last, like TorchRL's own collectors), with ``observation``,
``action``, whatever the policy returns (e.g. ``sample_log_prob``), and ``next/{observation, reward,
terminated, truncated, done}`` (reward and flags with a trailing dim of 1). ``next/observation`` is the true
final observation when an episode ended at that step, not the auto-reset one, so truncated steps can bootstrap.

It steps the env with numpy and calls one plain policy module per vector step; that is ~5x the frame rate
of TorchRL's stock ``Collector`` over ``GymWrapper`` on small envs. Everything needed to continue exactly is in
``state_dict()``: the pickled vector env, the current observation, open-episode statistics, the sampling
generator, the normalisation statistics and the policy's exploration state.

With ``complete_episodes=True`` a rollout holds whole episodes only, each started and finished under the
current policy (Monte-Carlo policy gradients need G(τ) and per-episode importance ratios): every env keeps
stepping until it has taken at least its share (``steps_per_env``) in this rollout *and* its current episode
has ended; then it idles (its sub-env is not stepped, so nothing straddles into the next rollout) while the
others finish. The sub-envs of the ``SyncVectorEnv`` are stepped individually, each reset right after its
episode ends, so every rollout starts a fresh episode in every env. Layout ``[num_envs, T_max]`` with a boolean
``mask`` (False on padding); padding steps are marked ``terminated`` and ``done`` (reward 0) so that every
estimator cuts there, and ``frames`` counts only the steps actually taken.

Shaped training envs (``env.shaping``, :mod:`lrl.data.shaping`) report the env's own reward in ``info``: episode
returns (``pop_episodes``, ``train/episode_return``) then count that, and the reward the learner sees goes into
``next/reward`` as always (before any reward scaling). With ``track_extras`` (set by a source with shaping or a
curriculum) every finished episode also leaves ``(shaped return, success)`` in :meth:`pop_extras` (NaN where
unknown); otherwise nothing is kept and a step costs one extra dict look-up.

A policy with per-env exploration state (e.g. Ornstein-Uhlenbeck noise) may define ``reset(done)`` (called with
the boolean episode-end mask of a step where an episode ended) and ``exploration_state()`` /
``load_exploration_state(state)`` (saved and restored with the collector, per rank).
"""

from __future__ import annotations

import logging
import math
import pickle
from collections import OrderedDict, deque
from collections.abc import Iterator
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tensordict import TensorDict
from torchrl.collectors import BaseCollector

from lrl.contract import CollectionPolicy
from lrl.data.normalize import ObsNormalizer, RewardScaler
from lrl.data.shaping import ENV_REWARD, env_reward, episode_success
from lrl.spec import EnvSpec

log = logging.getLogger(__name__)



def _mujoco_states(env: gym.vector.VectorEnv) -> list[Any] | None:
    """MuJoCo's full integration state (qpos, qvel, act, warm-start, controls, ...) of each sub-env.

    A pickled MuJoCo env does not continue identically by itself: gymnasium's MuJoCo envs
    pickle their constructor arguments (EzPickle) and come back fresh. Restoring this state and the env's own
    random generator (used at resets) makes it continue step for step.
    """
    envs = getattr(env, "envs", None)
    if not envs or not hasattr(envs[0].unwrapped, "data"):
        return None
    import mujoco

    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    out = []
    for e in envs:
        u = e.unwrapped
        state = np.empty(mujoco.mj_stateSize(u.model, spec))
        mujoco.mj_getState(u.model, u.data, state, spec)
        out.append((state, u.np_random.bit_generator.state))
    return out


def _set_mujoco_states(env: gym.vector.VectorEnv, states: list[Any]) -> None:
    import mujoco

    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    sync: Any = env  # a SyncVectorEnv (checked by the caller): its sub-envs
    for e, (state, rng_state) in zip(sync.envs, states, strict=True):
        u = e.unwrapped
        u.np_random.bit_generator.state = rng_state
        mujoco.mj_setState(u.model, u.data, state, spec)
        mujoco.mj_forward(u.model, u.data)


class VecEnvCollector(BaseCollector):
    def __init__(self, env: gym.vector.VectorEnv, spec: EnvSpec, policy: CollectionPolicy, *,
                 steps_per_env: int, env_seeds: list[int], device: torch.device | str = "cpu",
                 obs_normalizer: ObsNormalizer | None = None, reward_scaler: RewardScaler | None = None,
                 episode_window: int = 100, complete_episodes: bool = False) -> None:
        super().__init__()
        if complete_episodes and not hasattr(env, "envs"):
            raise ValueError("complete_episodes needs a SyncVectorEnv (its sub-envs are stepped one by one)")
        self.complete_episodes = complete_episodes
        self.env, self.spec, self.policy = env, spec, policy
        self.steps, self.num_envs = steps_per_env, env.num_envs
        self.device = torch.device(device)
        self.obs_normalizer, self.reward_scaler = obs_normalizer, reward_scaler
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(int(env_seeds[0]) + 7919)
        self.frames = 0
        self.total_frames = -1  # endless; BaseCollector.__len__ reads it
        self.completed: deque[tuple[float, int]] = deque(maxlen=episode_window)
        self.new_episodes: list[tuple[float, int]] = []
        self.track_extras = False  # keep (shaped return, success) per finished episode (shaping, curricula)
        self.new_extras: list[tuple[float, float]] = []
        obs, _ = env.reset(seed=[int(s) for s in env_seeds])  # type: ignore[arg-type]
        self._obs = np.asarray(obs)
        self._ep_return = np.zeros(self.num_envs)  # the env's own reward
        self._ep_shaped = np.zeros(self.num_envs)  # the reward the learner sees (shaped envs only)
        self._ep_length = np.zeros(self.num_envs, np.int64)
        self._low = np.asarray(spec.action_low, np.float32) if spec.action_low else None
        self._high = np.asarray(spec.action_high, np.float32) if spec.action_high else None
        self._obs_dtype = np.uint8 if spec.obs_kind == "image" else np.float32  # pixels stay bytes (docs/atari.md)

    def _normalize(self, obs: np.ndarray) -> np.ndarray:
        return self.obs_normalizer(obs) if self.obs_normalizer else obs.astype(self._obs_dtype, copy=False)

    @torch.no_grad()
    def rollout(self) -> TensorDict:
        if self.complete_episodes:
            return self._rollout_episodes()
        T, N = self.steps, self.num_envs
        shape = (T, N, *self.spec.obs_shape)
        obs_buf, next_buf = np.empty(shape, self._obs_dtype), np.empty(shape, self._obs_dtype)
        rew_buf = np.empty((T, N), np.float32)
        term_buf, trunc_buf = np.empty((T, N), bool), np.empty((T, N), bool)
        out_bufs: dict[str, torch.Tensor] = {}
        reset_policy = getattr(self.policy, "reset", None)  # per-env exploration state to clear at episode ends
        for t in range(T):
            if self.obs_normalizer:
                self.obs_normalizer.push(self._obs)
            obs_t = self._normalize(self._obs)
            obs_buf[t] = obs_t
            out = self.policy(torch.from_numpy(obs_t).to(self.device), self.generator)
            for k, v in out.items():
                if k not in out_bufs:
                    out_bufs[k] = torch.empty((T, *v.shape), dtype=v.dtype, device=v.device)
                out_bufs[k][t] = v
            action = out["action"].cpu().numpy()
            if self._low is not None:
                action = np.clip(action, self._low, self._high)
            next_obs, reward, term, trunc, info = self.env.step(action)
            reward = np.asarray(reward, np.float64)
            done = np.logical_or(term, trunc)
            final = np.asarray(next_obs).copy()
            if done.any():
                for i in np.flatnonzero(done):
                    final[i] = info["final_obs"][i]
                if reset_policy is not None:
                    reset_policy(torch.from_numpy(done).to(self.device))
            next_buf[t] = self._normalize(final)
            own = env_reward(info, N)
            if own is None:
                self._ep_return += reward
            else:
                self._ep_return += own
                self._ep_shaped += reward
            self._ep_length += 1
            if done.any():
                self._finish(np.flatnonzero(done), info, own is not None)
            rew_buf[t] = self.reward_scaler(reward, done) if self.reward_scaler else reward
            term_buf[t], trunc_buf[t] = term, trunc
            self._obs = np.asarray(next_obs)
        self.frames += T * N
        self.completed.extend(self.new_episodes)

        def tm(x: np.ndarray | torch.Tensor) -> torch.Tensor:  # [T, N, ...] -> [N, T, ...] on device
            x = torch.from_numpy(x) if isinstance(x, np.ndarray) else x
            return x.transpose(0, 1).to(self.device)

        term_t, trunc_t = tm(term_buf).unsqueeze(-1), tm(trunc_buf).unsqueeze(-1)
        td = TensorDict(
            {
                "observation": tm(obs_buf),
                **{k: tm(v) for k, v in out_bufs.items()},
                "next": {
                    "observation": tm(next_buf),
                    "reward": tm(rew_buf).unsqueeze(-1),
                    "terminated": term_t,
                    "truncated": trunc_t,
                    "done": term_t | trunc_t,
                },
            },
            batch_size=[N, T],
            device=self.device,
        )
        return td

    @torch.no_grad()
    def _rollout_episodes(self) -> TensorDict:
        """Whole episodes only: see the module docstring. Time-major growing buffers, ``[N, T_max]`` out."""
        N, share = self.num_envs, self.steps
        sync: Any = self.env  # complete episodes need sync vectorisation (checked at validate time)
        envs = sync.envs
        taken = np.zeros(N, np.int64)
        active = np.ones(N, bool)
        cap = 2 * share + 16
        obs_buf = np.zeros((cap, N, *self.spec.obs_shape), self._obs_dtype)
        next_buf = np.zeros_like(obs_buf)
        rew_buf = np.zeros((cap, N), np.float32)
        term_buf, trunc_buf, mask_buf = np.ones((cap, N), bool), np.zeros((cap, N), bool), np.zeros((cap, N), bool)
        out_bufs: dict[str, torch.Tensor] = {}
        t = 0
        while active.any():
            if t == cap:  # a long episode: grow every buffer (padding values as initialised)
                obs_buf, next_buf = (np.concatenate([b, np.zeros_like(b)]) for b in (obs_buf, next_buf))
                rew_buf, trunc_buf, mask_buf = (np.concatenate([b, np.zeros_like(b)])
                                                for b in (rew_buf, trunc_buf, mask_buf))
                term_buf = np.concatenate([term_buf, np.ones_like(term_buf)])
                out_bufs = {k: torch.cat([v, torch.zeros_like(v)]) for k, v in out_bufs.items()}
                cap *= 2
            idx = np.flatnonzero(active)
            raw = self._obs[idx]
            if self.obs_normalizer:
                self.obs_normalizer.push(raw)
            obs_t = self._normalize(raw)
            obs_buf[t, idx] = obs_t
            out = self.policy(torch.from_numpy(obs_t).to(self.device), self.generator)
            idx_t = torch.from_numpy(idx).to(self.device)
            for k, v in out.items():
                if k not in out_bufs:
                    out_bufs[k] = torch.zeros((cap, N, *v.shape[1:]), dtype=v.dtype, device=v.device)
                out_bufs[k][t, idx_t] = v
            action = out["action"].cpu().numpy()
            if self._low is not None:
                action = np.clip(action, self._low, self._high)
            reward = np.empty(len(idx))
            term, trunc = np.empty(len(idx), bool), np.empty(len(idx), bool)
            final = np.empty_like(raw)
            own = np.empty(len(idx))
            success = np.full(len(idx), np.nan)
            shaped = False
            for j, i in enumerate(idx):
                o, reward[j], term[j], trunc[j], info = envs[i].step(action[j])
                own[j] = info.get(ENV_REWARD, reward[j])
                shaped = shaped or ENV_REWARD in info
                final[j] = o
                if term[j] or trunc[j]:
                    success[j] = episode_success(info)
                    o, _ = envs[i].reset()
                    active[i] = taken[i] + 1 < share  # its share is done and so is its episode: idle
                self._obs[i] = o
            taken[idx] += 1
            done = term | trunc
            next_buf[t, idx] = self._normalize(final)
            self._ep_return[idx] += own
            if shaped:
                self._ep_shaped[idx] += reward
            self._ep_length[idx] += 1
            for i, ok in zip(idx[done], success[done], strict=True):
                self._end_episode(int(i), shaped, float(ok))
            rew_buf[t, idx] = self.reward_scaler(reward, done, idx) if self.reward_scaler else reward
            term_buf[t, idx], trunc_buf[t, idx], mask_buf[t, idx] = term, trunc, True
            t += 1
        self.frames += int(taken.sum())
        self.completed.extend(self.new_episodes)

        def tm(x: np.ndarray | torch.Tensor) -> torch.Tensor:  # [T, N, ...] -> [N, T, ...] on device
            x = torch.from_numpy(x[:t]) if isinstance(x, np.ndarray) else x[:t]
            return x.transpose(0, 1).to(self.device)

        term_t, trunc_t = tm(term_buf).unsqueeze(-1), tm(trunc_buf).unsqueeze(-1)
        return TensorDict(
            {
                "observation": tm(obs_buf),
                "mask": tm(mask_buf),
                **{k: tm(v) for k, v in out_bufs.items()},
                "next": {"observation": tm(next_buf), "reward": tm(rew_buf).unsqueeze(-1), "terminated": term_t,
                         "truncated": trunc_t, "done": term_t | trunc_t},
            },
            batch_size=[N, t],
            device=self.device,
        )

    def _finish(self, ended: np.ndarray, info: dict[str, Any], shaped: bool) -> None:
        """Record the episodes of the sub-envs ``ended`` in this vector step (their last info is ``info``'s
        ``final_info``)."""
        for i in ended:
            self._end_episode(int(i), shaped, episode_success(info, int(i)) if self.track_extras else math.nan)

    def _end_episode(self, i: int, shaped: bool, success: float) -> None:
        self.new_episodes.append((float(self._ep_return[i]), int(self._ep_length[i])))
        if self.track_extras:
            self.new_extras.append((float(self._ep_shaped[i]) if shaped else math.nan, success))
        self._ep_return[i] = self._ep_shaped[i] = 0.0
        self._ep_length[i] = 0

    def pop_episodes(self) -> list[tuple[float, int]]:
        """Episodes (return, length) completed since the last call, in the env's own (unshaped, unscaled) reward."""
        out, self.new_episodes = self.new_episodes, []
        return out

    def pop_extras(self) -> list[tuple[float, float]]:
        """(shaped return, success) of the same episodes as :meth:`pop_episodes`, in the same order, when
        ``track_extras`` is on (NaN where there is no shaping or the env reports no success)."""
        out, self.new_extras = self.new_extras, []
        return out

    # --- torchrl.collectors.BaseCollector -------------------------------------------------------------
    def iterator(self) -> Iterator[TensorDict]:
        while True:
            yield self.rollout()

    def set_seed(self, seed: int, static_seed: bool = False) -> int:
        obs, _ = self.env.reset(seed=[seed + i for i in range(self.num_envs)])  # type: ignore[arg-type]
        self._obs = np.asarray(obs)
        self.generator.manual_seed(seed + 7919)
        return seed

    def shutdown(self, timeout: float | None = None, close_env: bool = True, raise_on_error: bool = True) -> None:
        if close_env:
            self.env.close()

    def state_dict(self) -> OrderedDict:
        try:
            env_bytes: bytes | None = pickle.dumps(self.env)
        except Exception:  # async vector envs hold processes and pipes
            env_bytes = None
        return OrderedDict(
            env=env_bytes, mujoco=_mujoco_states(self.env), obs=self._obs.copy(),
            ep_return=self._ep_return.copy(), ep_length=self._ep_length.copy(), ep_shaped=self._ep_shaped.copy(),
            generator=self.generator.get_state(), frames=self.frames, completed=list(self.completed),
            obs_normalizer=self.obs_normalizer.state_dict() if self.obs_normalizer else None,
            reward_scaler=self.reward_scaler.state_dict() if self.reward_scaler else None,
            exploration=self.policy.exploration_state() if hasattr(self.policy, "exploration_state") else None,
        )

    def load_state_dict(self, state: OrderedDict) -> None:
        if state["env"] is not None:
            self.env.close()
            self.env = pickle.loads(state["env"])
            if state.get("mujoco"):
                _set_mujoco_states(self.env, state["mujoco"])
            self._obs = state["obs"].copy()
            self._ep_return, self._ep_length = state["ep_return"].copy(), state["ep_length"].copy()
            if state.get("ep_shaped") is not None:  # checkpoints before shaping have none
                self._ep_shaped = state["ep_shaped"].copy()
        else:
            log.warning("environment state was not saved (unpicklable env); open episodes restart from a reset")
        self.generator.set_state(state["generator"])
        self.frames = state["frames"]
        self.completed.clear()
        self.completed.extend(state["completed"])
        if self.obs_normalizer and state["obs_normalizer"]:
            self.obs_normalizer.load_state_dict(state["obs_normalizer"])
        if self.reward_scaler and state["reward_scaler"]:
            self.reward_scaler.load_state_dict(state["reward_scaler"])
        if state.get("exploration") is not None and hasattr(self.policy, "load_exploration_state"):
            # checkpoints are read onto the CPU: tensors of the noise process go back to where the policy acts
            self.policy.load_exploration_state({k: v.to(self.device) if isinstance(v, torch.Tensor) else v
                                                for k, v in state["exploration"].items()})


def make_collector(kind: str, env: gym.vector.VectorEnv, spec: EnvSpec, policy: CollectionPolicy,
                   **kwargs: Any) -> VecEnvCollector:
    """The one place a DataModule gets its collector from.

    ``lean`` (default): :class:`VecEnvCollector`. ``torchrl``: TorchRL's stock ``Collector`` over ``GymWrapper``
    behind the same interface (:class:`~lrl.data.torchrl_collector.StockCollector`); same rollouts for the same
    seed and policy, several times slower on small envs, no normalisation and no exact env restore.
    """
    if kind == "lean":
        return VecEnvCollector(env, spec, policy, **kwargs)
    if kind == "torchrl":
        from lrl.data.torchrl_collector import StockCollector

        return StockCollector(env, spec, policy, **kwargs)  # type: ignore[return-value]
    raise ValueError(f"unknown collector kind {kind!r}")
