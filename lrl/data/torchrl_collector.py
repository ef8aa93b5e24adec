"""The same collector interface as :class:`~lrl.data.collector.VecEnvCollector`, on TorchRL's stock collector.

:class:`StockCollector` drives :class:`torchrl.collectors.Collector` over ``torchrl.envs.GymWrapper`` of the
given gymnasium vector env, with the plain collection policy wrapped in a :class:`tensordict.nn.TensorDictModule`
that samples from this collector's own ``torch.Generator``. Seeded the same way (envs reset with ``env_seeds``,
generator seeded with ``env_seeds[0] + 7919``), it yields exactly the lean collector's rollouts, in the same
layout: ``[num_envs, T]`` with ``observation``, ``action``, the policy's other outputs and
``next/{observation, reward, terminated, truncated, done}`` (trailing dim 1); ``next/observation`` is the true
final observation where an episode ended. It exists as a reference and a fallback (``data.collector=torchrl``);
the lean collector is several times faster on small envs.

Autoreset: a ``SyncVectorEnv`` is switched to ``AutoresetMode.DISABLED`` (TorchRL's preferred mode): the env then
returns the true final observation from ``step`` and TorchRL resets only the finished sub-envs
(``reset(options={"reset_mask": ...})``), which consumes the sub-envs' random generators exactly as gymnasium's
SAME_STEP autoreset does. In SAME_STEP mode TorchRL would instead read ``info["final_obs"]`` into a ``"final"``
entry and let ``VecGymEnvTransform`` swap it with the reset observation; but when *every* sub-env ends on the same
step (always, for fixed-length episodes like Pendulum's) ``GymWrapper._reset`` sees an all-true ``_reset`` mask and
resets the whole vector env once more, so the next episodes start from different states than gymnasium's own
autoreset (and the lean collector) gave them. An ``AsyncVectorEnv`` cannot be switched and keeps that behaviour.

Limitations:

* no observation normalisation / reward scaling (a :class:`~lrl.errors.RecipeError` if asked for);
* ``state_dict()`` holds TorchRL's collector state (without the policy weights, which belong to the module's
  checkpoint), the sampling generator, the frame count and the episode statistics, but *not* the gymnasium
  env's internal state: TorchRL's ``GymWrapper`` does not serialise it. After ``load_state_dict()`` the envs
  continue from wherever they are (fresh episodes for a freshly built collector), so an exact step-for-step
  resume needs the lean collector;
* episode returns are summed from TorchRL's float32 rewards (the lean collector sums gymnasium's float64 ones).
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Iterator

import gymnasium as gym
import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.collectors import BaseCollector, Collector
from torchrl.envs import GymWrapper

from lrl.contract import CollectionPolicy
from lrl.data.normalize import ObsNormalizer, RewardScaler
from lrl.errors import RecipeError
from lrl.spec import EnvSpec

log = logging.getLogger(__name__)

# With action bounds, the env reads the clipped action from "action" and the policy's own sample (what the
# rollout keeps as "action", like the lean collector) travels under this key.
_RAW_ACTION = "unclipped_action"
_NEXT_KEYS = ("observation", "reward", "terminated", "truncated", "done")


class _GeneratorPolicy(nn.Module):
    """``obs -> {policy outputs...}``, sampling from the owning collector's generator; clips bounded actions."""

    def __init__(self, policy: CollectionPolicy, generator: torch.Generator,
                 low: torch.Tensor | None, high: torch.Tensor | None) -> None:
        super().__init__()
        self.policy = policy  # an nn.Module policy is registered, so TorchRL sees (and keeps) its parameters
        self.generator = generator
        self.low, self.high = low, high

    def forward(self, obs: torch.Tensor) -> dict[str, torch.Tensor]:
        out = dict(self.policy(obs, self.generator))
        if self.low is not None and self.high is not None:
            action = out[_RAW_ACTION] = out["action"]
            out["action"] = action.clamp(self.low.to(action.device), self.high.to(action.device))
        return out


class StockCollector(BaseCollector):
    def __init__(self, env: gym.vector.VectorEnv, spec: EnvSpec, policy: CollectionPolicy, *,
                 steps_per_env: int, env_seeds: list[int], device: torch.device | str = "cpu",
                 obs_normalizer: ObsNormalizer | None = None, reward_scaler: RewardScaler | None = None,
                 episode_window: int = 100) -> None:
        if obs_normalizer is not None or reward_scaler is not None:
            raise RecipeError("data.collector=torchrl does not support env.normalize_obs / env.normalize_reward; "
                              "use data.collector=lean")
        super().__init__()
        self.env, self.spec, self.policy = env, spec, policy
        self.steps, self.num_envs = steps_per_env, env.num_envs
        self.device = torch.device(device)
        self.obs_normalizer: ObsNormalizer | None = None
        self.reward_scaler: RewardScaler | None = None
        self.env_seeds = [int(s) for s in env_seeds]
        self.generator = torch.Generator(device=self.device)
        self.frames = 0
        self.total_frames = -1  # endless; BaseCollector.__len__ reads it
        self.completed: deque[tuple[float, int]] = deque(maxlen=episode_window)
        self.new_episodes: list[tuple[float, int]] = []
        self._ep_return = np.zeros(self.num_envs)
        self._ep_length = np.zeros(self.num_envs, np.int64)

        low = torch.tensor(spec.action_low, dtype=torch.float32, device=self.device) if spec.action_low else None
        high = torch.tensor(spec.action_high, dtype=torch.float32, device=self.device) if spec.action_high else None
        adapter = _GeneratorPolicy(policy, self.generator, low, high)
        # The policy's output keys: one call on a zero observation with a throw-away generator.
        with torch.no_grad():
            probe = policy(torch.zeros((self.num_envs, *spec.obs_shape), device=self.device),
                           torch.Generator(device=self.device))
        self.out_keys = list(probe)
        self._bounded = low is not None
        td_out_keys = [*self.out_keys, _RAW_ACTION] if self._bounded else self.out_keys
        self.td_policy = TensorDictModule(adapter, in_keys=["observation"], out_keys=td_out_keys)

        # See the module docstring for why SAME_STEP is switched off. (The vector env's metadata is its own copy.)
        disabled = gym.vector.AutoresetMode.DISABLED
        if isinstance(env, gym.vector.SyncVectorEnv):
            env.autoreset_mode = disabled
            env.metadata["autoreset_mode"] = disabled
        elif getattr(env, "autoreset_mode", disabled) != disabled:
            log.warning("data.collector=torchrl over %s: when all sub-envs end on the same step, TorchRL resets "
                        "them all once more", type(env).__name__)
        # GymWrapper may step the env while building (to infer info specs); the seeded reset below undoes that.
        # Discrete actions: integer (Categorical) encoding, not TorchRL's one-hot default.
        self.torchrl_env = GymWrapper(env, categorical_action_encoding=True, device="cpu")
        self.collector = Collector(
            self.torchrl_env, self.td_policy, frames_per_batch=steps_per_env * self.num_envs,
            env_device="cpu", policy_device=self.device, storing_device=self.device,
            trust_policy=True, auto_register_policy_transforms=False,
        )
        if self.collector.policy is not self.td_policy:
            raise RuntimeError("TorchRL copied the collection policy (its parameters are not on "
                               f"{self.device}); it would not follow training updates")
        # Building the Collector reset the env and called the policy (to find its output keys): seed now,
        # exactly like the lean collector, so both see the same env resets and the same sampling noise.
        self.collector.reset(seed=self.env_seeds)
        self.generator.manual_seed(self.env_seeds[0] + 7919)

    @torch.no_grad()
    def rollout(self) -> TensorDict:
        raw = self.collector.rollout()  # TorchRL reuses this storage: copy out what we keep
        N, T = self.num_envs, self.steps
        td = TensorDict(
            {
                "observation": raw["observation"].clone(),
                **{k: raw[k].clone() for k in self.out_keys},
                **({"action": raw[_RAW_ACTION].clone()} if self._bounded else {}),
                "next": {k: raw["next", k].clone() for k in _NEXT_KEYS},
            },
            batch_size=[N, T],
            device=self.device,
        )
        self._count_episodes(td["next", "reward"].squeeze(-1), td["next", "done"].squeeze(-1))
        self.frames += N * T
        self.completed.extend(self.new_episodes)
        return td

    def _count_episodes(self, reward: torch.Tensor, done: torch.Tensor) -> None:
        reward_np, done_np = reward.double().cpu().numpy(), done.cpu().numpy()
        for t in range(reward_np.shape[1]):
            self._ep_return += reward_np[:, t]
            self._ep_length += 1
            ended = done_np[:, t]
            for i in np.flatnonzero(ended):
                self.new_episodes.append((float(self._ep_return[i]), int(self._ep_length[i])))
            self._ep_return[ended] = 0.0
            self._ep_length[ended] = 0

    def pop_episodes(self) -> list[tuple[float, int]]:
        """Episodes (return, length) completed since the last call."""
        out, self.new_episodes = self.new_episodes, []
        return out

    # --- torchrl.collectors.BaseCollector -------------------------------------------------------------
    def iterator(self) -> Iterator[TensorDictBase]:
        while True:
            yield self.rollout()

    def set_seed(self, seed: int, static_seed: bool = False) -> int:
        self.collector.reset(seed=[seed + i for i in range(self.num_envs)])
        self._ep_return[:] = 0.0
        self._ep_length[:] = 0
        self.generator.manual_seed(seed + 7919)
        return seed

    def shutdown(self, timeout: float | None = None, close_env: bool = True, raise_on_error: bool = True) -> None:
        self.collector.shutdown(timeout=timeout, close_env=close_env, raise_on_error=raise_on_error)

    def state_dict(self) -> OrderedDict:
        """TorchRL's collector state (less the policy weights) + generator, frames and episode statistics.

        The gymnasium env's internal state is not included (TorchRL's GymWrapper does not serialise it).
        """
        torchrl_state = self.collector.state_dict()
        torchrl_state.pop("policy_state_dict", None)
        return OrderedDict(
            torchrl=torchrl_state, generator=self.generator.get_state(), frames=self.frames,
            completed=list(self.completed), obs_normalizer=None, reward_scaler=None,
        )

    def load_state_dict(self, state: OrderedDict) -> None:
        log.warning("data.collector=torchrl does not save the environment state; open episodes restart "
                    "from the current env state (use data.collector=lean for an exact resume)")
        self.collector.load_state_dict(state["torchrl"], strict=False)
        self.generator.set_state(state["generator"])
        self.frames = state["frames"]
        self.completed.clear()
        self.completed.extend(state["completed"])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(env={self.spec.id}, num_envs={self.num_envs}, steps={self.steps})"
