"""The lean collector: TorchRL layout, true final observations, frames, exact continuation from its state."""

from __future__ import annotations

import numpy as np
import torch

from lrl.data.collector import VecEnvCollector
from lrl.data.env import make_vec_env, probe_env_spec
from lrl.data.normalize import ObsNormalizer
from lrl.networks import ActorCritic, SamplingPolicy
from lrl.recipe.schema import EnvConfig


def _collector(env_id: str = "CartPole-v1", n: int = 4, steps: int = 64, norm: bool = False) -> VecEnvCollector:
    cfg = EnvConfig(id=env_id, num_envs=n)
    spec = probe_env_spec(cfg)
    torch.manual_seed(0)
    policy = SamplingPolicy(ActorCritic(spec, [16]))
    return VecEnvCollector(make_vec_env(cfg, n), spec, policy, steps_per_env=steps, env_seeds=list(range(n)),
                           obs_normalizer=ObsNormalizer(spec.obs_shape, 10.0) if norm else None)


def test_layout_and_final_observations() -> None:
    c = _collector()
    td = c.rollout()
    assert td.batch_size == torch.Size([4, 64]) and c.frames == 256
    assert td["next", "reward"].shape == (4, 64, 1) and td["next", "done"].dtype == torch.bool
    done = td["next", "done"].squeeze(-1)
    assert done.any(), "a random CartPole policy ends episodes within 64 steps"
    obs, nxt = td["observation"], td["next", "observation"]
    # within an episode the next observation is the following step's observation ...
    same = ~done[:, :-1]
    torch.testing.assert_close(nxt[:, :-1][same], obs[:, 1:][same])
    # ... and at an episode end it is the true final state (CartPole ends out of bounds), not the reset state
    final = nxt[:, :-1][done[:, :-1]]
    reset = obs[:, 1:][done[:, :-1]]
    assert (final - reset).abs().sum(-1).min() > 0
    assert ((final[:, 0].abs() > 2.4) | (final[:, 2].abs() > 0.2095)).all()
    episodes = c.pop_episodes()
    assert len(episodes) == int(done.sum()) and all(r == n for r, n in episodes)  # reward 1 per step


def test_state_dict_continues_exactly() -> None:
    for env_id, norm in (("CartPole-v1", False), ("Pendulum-v1", True)):
        a = _collector(env_id, norm=norm)
        a.rollout()
        state = a.state_dict()
        expected = a.rollout()
        b = _collector(env_id, norm=norm)
        b.load_state_dict(state)
        got = b.rollout()
        for key in expected.keys(include_nested=True, leaves_only=True):
            torch.testing.assert_close(got[key], expected[key], msg=f"{env_id} {key}")
        assert a.frames == b.frames


def test_mujoco_state_continues_exactly() -> None:
    a = _collector("InvertedPendulum-v5", n=2, steps=16)
    a.rollout()
    state = a.state_dict()
    expected = a.rollout()
    b = _collector("InvertedPendulum-v5", n=2, steps=16)
    b.load_state_dict(state)
    np.testing.assert_allclose(b.rollout()["next", "observation"].numpy(), expected["next", "observation"].numpy())
