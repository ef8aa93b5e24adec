"""TorchRL's stock collector behind the lean collector's interface yields the lean collector's rollouts exactly."""

from __future__ import annotations

import pytest
import torch

from lrl.data.collector import VecEnvCollector
from lrl.data.env import make_vec_env, probe_env_spec
from lrl.data.normalize import ObsNormalizer
from lrl.data.torchrl_collector import StockCollector
from lrl.errors import RecipeError
from lrl.networks import ActorCritic, SamplingPolicy
from lrl.recipe.schema import EnvConfig


def _pair(env_id: str, n: int, steps: int) -> tuple[VecEnvCollector, StockCollector]:
    cfg = EnvConfig(id=env_id, num_envs=n)
    spec = probe_env_spec(cfg)
    torch.manual_seed(0)
    policy = SamplingPolicy(ActorCritic(spec, [16]))
    seeds = [10 + i for i in range(n)]
    lean = VecEnvCollector(make_vec_env(cfg, n), spec, policy, steps_per_env=steps, env_seeds=seeds)
    stock = StockCollector(make_vec_env(cfg, n), spec, policy, steps_per_env=steps, env_seeds=seeds)
    return lean, stock


# CartPole: episodes end (terminate) within 64 random steps; Pendulum: truncates at 200 steps, so 2 x 128 steps
# exercise a truncation with its true final observation.
@pytest.mark.parametrize(("env_id", "n", "steps"), [("CartPole-v1", 4, 64), ("Pendulum-v1", 2, 128)])
def test_stock_collector_matches_lean(env_id: str, n: int, steps: int) -> None:
    lean, stock = _pair(env_id, n, steps)
    ended = 0
    for _ in range(2):
        expected, got = lean.rollout(), stock.rollout()
        assert got.batch_size == expected.batch_size == torch.Size([n, steps])
        keys = set(expected.keys(include_nested=True, leaves_only=True))
        assert set(got.keys(include_nested=True, leaves_only=True)) == keys
        for key in sorted(keys, key=str):
            assert got[key].dtype == expected[key].dtype, key
            torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0, msg=f"{env_id} {key}")
        ended += int(expected["next", "done"].sum())
        assert stock.frames == lean.frames
        ep_lean, ep_stock = lean.pop_episodes(), stock.pop_episodes()
        assert [length for _, length in ep_stock] == [length for _, length in ep_lean]
        # returns: TorchRL sums float32 rewards, the lean collector float64 ones
        torch.testing.assert_close(torch.tensor([r for r, _ in ep_stock], dtype=torch.float64),
                                   torch.tensor([r for r, _ in ep_lean], dtype=torch.float64), rtol=1e-6, atol=1e-4)
    assert ended > 0, "episodes must end mid-rollout so auto-reset and final observations are exercised"
    assert len(stock.completed) == len(lean.completed) == ended
    lean.shutdown()
    stock.shutdown()


def test_stock_collector_state_dict_round_trip() -> None:
    _, a = _pair("CartPole-v1", 4, 32)
    a.rollout()
    state = a.state_dict()
    _, b = _pair("CartPole-v1", 4, 32)
    b.load_state_dict(state)
    assert b.frames == a.frames and list(b.completed) == list(a.completed)
    torch.testing.assert_close(b.generator.get_state(), a.generator.get_state())
    assert b.rollout().batch_size == torch.Size([4, 32])


def test_stock_collector_rejects_normalisation() -> None:
    cfg = EnvConfig(id="CartPole-v1", num_envs=2)
    spec = probe_env_spec(cfg)
    policy = SamplingPolicy(ActorCritic(spec, [16]))
    with pytest.raises(RecipeError, match=r"data\.collector=torchrl"):
        StockCollector(make_vec_env(cfg, 2), spec, policy, steps_per_env=8, env_seeds=[0, 1],
                       obs_normalizer=ObsNormalizer(spec.obs_shape, 10.0))
