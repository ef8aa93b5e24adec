"""Complete-episode rollouts (``data.complete_episodes``): whole episodes only, each env replayed independently
gives the same transitions (no leakage across envs or rollouts), mask and padding, frame counting, exact
continuation from the collector state, and the DataModule's batches and clock."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from tensordict import TensorDict

from lrl.contract import Schedule
from lrl.data.collector import VecEnvCollector
from lrl.data.env import make_vec_env, probe_env_spec
from lrl.data.normalize import ObsNormalizer, RewardScaler
from lrl.data.onpolicy import OnPolicyDataModule
from lrl.errors import RecipeError
from lrl.networks import PolicyNet, SamplingPolicy
from lrl.recipe.schema import EnvConfig


def _collector(env_id: str = "CartPole-v1", n: int = 3, share: int = 40, norm: bool = False) -> VecEnvCollector:
    cfg = EnvConfig(id=env_id, num_envs=n)
    spec = probe_env_spec(cfg)
    torch.manual_seed(0)
    policy = SamplingPolicy(PolicyNet(spec, [16]))
    return VecEnvCollector(make_vec_env(cfg, n), spec, policy, steps_per_env=share, env_seeds=list(range(n)),
                           complete_episodes=True,
                           obs_normalizer=ObsNormalizer(spec.obs_shape, 10.0) if norm else None,
                           reward_scaler=RewardScaler(n, 0.99, 10.0) if norm else None)


def _rows(td: TensorDict) -> list[dict[str, np.ndarray]]:
    """The real steps of each env's row."""
    out = []
    for i in range(td.batch_size[0]):
        m = td["mask"][i]
        out.append({"obs": td["observation"][i][m].numpy(), "action": td["action"][i][m].numpy(),
                    "next": td["next", "observation"][i][m].numpy(),
                    "reward": td["next", "reward"][i][m].squeeze(-1).numpy(),
                    "term": td["next", "terminated"][i][m].squeeze(-1).numpy(),
                    "trunc": td["next", "truncated"][i][m].squeeze(-1).numpy()})
    return out


def test_rollouts_hold_whole_episodes_with_a_correct_mask_and_padding() -> None:
    c = _collector()
    for _ in range(3):
        before = c.frames
        td = c.rollout()
        mask, done = td["mask"], td["next", "done"].squeeze(-1)
        n, t_max = td.batch_size
        lengths = mask.sum(1)
        assert c.frames - before == int(lengths.sum())  # frames = steps actually taken
        assert int(lengths.max()) == t_max
        for i in range(n):
            k = int(lengths[i])
            assert mask[i, :k].all() and not mask[i, k:].any()  # real steps form a prefix
            assert done[i, k - 1]  # the row's last real step ends an episode
            ends = torch.nonzero(done[i, :k]).squeeze(-1)
            assert k >= 40  # at least its share ...
            prior = int(ends[-2]) + 1 if len(ends) > 1 else 0
            assert prior < 40  # ... and it stopped at the first episode end past its share
            pad = ~mask[i]
            assert td["next", "terminated"][i][pad].all() and td["next", "done"][i][pad].all()
            assert not td["next", "truncated"][i][pad].any() and (td["next", "reward"][i][pad] == 0).all()
        assert (c._ep_length == 0).all() and (c._ep_return == 0).all()  # no episode left open
        episodes = c.pop_episodes()
        assert len(episodes) == int((done & mask).sum()) and sum(length for _, length in episodes) == int(mask.sum())


def test_each_env_replayed_alone_gives_the_same_transitions() -> None:
    """Replaying env i's recorded actions in a fresh env with env i's seed reproduces its observations, rewards
    and flags over several rollouts: idle envs did not advance, episodes restart fresh at every rollout, and no
    data leaks between envs."""
    c = _collector(n=3, share=30)
    rollouts = [_rows(c.rollout()) for _ in range(3)]
    for i in range(3):
        env = gym.make("CartPole-v1")
        obs, _ = env.reset(seed=i)
        for rows in rollouts:
            row = rows[i]
            for t in range(len(row["action"])):
                np.testing.assert_array_equal(row["obs"][t], obs)
                nxt, reward, term, trunc, _ = env.step(int(row["action"][t]))
                np.testing.assert_array_equal(row["next"][t], nxt)
                assert (row["reward"][t], row["term"][t], row["trunc"][t]) == (reward, term, trunc)
                obs = env.reset()[0] if term or trunc else nxt


@pytest.mark.parametrize(("env_id", "norm"), [("CartPole-v1", False), ("Pendulum-v1", True)])
def test_state_dict_continues_exactly(env_id: str, norm: bool) -> None:
    a = _collector(env_id, share=50, norm=norm)
    a.rollout()
    state = a.state_dict()
    expected = a.rollout()
    b = _collector(env_id, share=50, norm=norm)
    b.load_state_dict(state)
    got = b.rollout()
    assert got.batch_size == expected.batch_size and a.frames == b.frames
    for key in expected.keys(include_nested=True, leaves_only=True):
        assert torch.equal(got[key], expected[key]), key


def test_long_episodes_grow_the_buffers() -> None:
    c = _collector("Pendulum-v1", n=2, share=3)  # 200-step episodes, initial capacity 2·3+16
    td = c.rollout()
    assert td.batch_size == torch.Size([2, 200]) and td["mask"].all() and c.frames == 400
    assert td["next", "truncated"][:, -1].all() and not td["next", "terminated"].any()


class _Module:
    """What the DataModule asks of a LightningModule."""

    discount = 0.99
    device = torch.device("cpu")

    def __init__(self, spec: Any) -> None:
        self.spec, self.clock = spec, 0
        torch.manual_seed(0)
        self.net = PolicyNet(spec, [16])

    def collection_policy(self) -> SamplingPolicy:
        return SamplingPolicy(self.net)

    def process_rollout(self, td: TensorDict) -> TensorDict:
        return td

    def relabel_rollout(self, td: TensorDict) -> TensorDict:  # no reward learner: the env's reward as it is
        return td

    def relabel_batch(self, td: TensorDict) -> TensorDict:
        return td

    def set_clock(self, clock: int) -> None:
        self.clock = clock


def _datamodule(minibatch_size: int | None, **kw: Any) -> OnPolicyDataModule:
    cfg = EnvConfig(id="CartPole-v1", num_envs=4)
    spec = probe_env_spec(cfg)
    dm = OnPolicyDataModule(env=cfg, spec=spec, seed=0, budget=10_000, clock_unit="frames", frames_per_batch=200,
                            schedule=Schedule(2, minibatch_size), complete_episodes=True, **kw)
    dm.trainer = SimpleNamespace(lightning_module=_Module(spec), world_size=1, global_rank=0)  # type: ignore[assignment]
    return dm


def test_datamodule_minibatches_cover_the_real_steps_and_the_clock_counts_frames() -> None:
    dm = _datamodule(minibatch_size=64)
    stream = iter(dm.train_dataloader())
    first = next(stream)
    rollout_frames = dm.clock
    assert first.first and first.clock == rollout_frames >= 200
    chunks = round(rollout_frames / 64)
    batches = [first] + [next(stream) for _ in range(2 * chunks - 1)]
    assert dm.at_boundary and not any(b.first for b in batches[1:])
    for epoch in (batches[:chunks], batches[chunks:]):
        assert all(b.td["mask"].all() for b in epoch)  # padding never reaches a minibatch
        assert sum(b.td.batch_size[0] for b in epoch) == rollout_frames
    second = next(stream)
    assert second.first and second.rollout == 2 and dm.clock > rollout_frames


def test_datamodule_whole_rollout_batches_and_exact_resume() -> None:
    dm = _datamodule(minibatch_size=None)
    stream = iter(dm.train_dataloader())
    a, b = next(stream), next(stream)
    assert a.first and not b.first and a.td is b.td and not a.td["mask"].all()  # whole rollout, padding and all
    state = dm.state_dict()
    expected = next(stream)
    resumed = _datamodule(minibatch_size=None)
    resumed.load_state_dict(state)
    got = next(iter(resumed.train_dataloader()))
    assert got.clock == expected.clock and got.rollout == expected.rollout
    for key in expected.td.keys(include_nested=True, leaves_only=True):
        assert torch.equal(got.td[key], expected.td[key]), key


def test_torchrl_collector_and_async_envs_are_refused_in_one_line() -> None:
    for kw, message in (({"collector": "torchrl"}, "data.collector=lean"), ({}, "env.vectorization=sync")):
        dm = _datamodule(minibatch_size=None, **kw)
        if not kw:
            dm.env_cfg = EnvConfig(id="CartPole-v1", num_envs=4, vectorization="async")
        with pytest.raises(RecipeError) as err:
            dm.train_dataloader()
        assert message in err.value.message and "\n" not in err.value.message
