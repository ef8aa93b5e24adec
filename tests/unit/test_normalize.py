"""Running statistics: merging equals computing on the concatenation; DDP sync equals one process."""

from __future__ import annotations

import numpy as np

from lrl.data.normalize import ObsNormalizer, RewardScaler, RunningMeanStd


def test_running_mean_std_equals_numpy() -> None:
    rng = np.random.default_rng(0)
    chunks = [rng.normal(3.0, 2.0, size=(n, 4)) for n in (5, 17, 1, 40)]
    rms = RunningMeanStd((4,))
    for c in chunks:
        rms.update(c)
    data = np.concatenate(chunks)
    np.testing.assert_allclose(rms.mean, data.mean(0))
    np.testing.assert_allclose(rms.var, data.var(0))
    assert rms.count == len(data)


def test_two_rank_sync_equals_single_process() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(30, 3)), rng.normal(2.0, 3.0, size=(30, 3))
    ranks = [ObsNormalizer((3,), clip=10.0), ObsNormalizer((3,), clip=10.0)]
    single = ObsNormalizer((3,), clip=10.0)
    ranks[0].push(a)
    ranks[1].push(b)
    single.push(a)
    single.push(b)
    pending = [r.pending.state_dict() for r in ranks]
    for r in ranks:
        r.sync(lambda _: pending)
    single.sync(None)
    for r in ranks:
        np.testing.assert_allclose(r.current.mean, single.current.mean)
        np.testing.assert_allclose(r.current.var, single.current.var)
    x = rng.normal(size=(4, 3))
    np.testing.assert_allclose(ranks[0](x), single(x))


def test_normalizer_state_round_trip_and_clip() -> None:
    norm = ObsNormalizer((2,), clip=1.0)
    norm.push(np.array([[0.0, 0.0], [2.0, 4.0]]))
    other = ObsNormalizer((2,), clip=1.0)
    other.load_state_dict(norm.state_dict())
    x = np.array([[100.0, -100.0]])
    np.testing.assert_allclose(other(x), norm(x))
    assert np.abs(norm(x)).max() == 1.0


def test_reward_scaler_divides_by_return_std_and_resets_on_done() -> None:
    scaler = RewardScaler(num_envs=2, gamma=0.5, clip=100.0)
    r = np.array([1.0, 2.0])
    out = scaler(r, np.array([True, False]))
    np.testing.assert_allclose(out, r / np.sqrt(scaler.current.var + 1e-8), rtol=1e-6)
    assert scaler.returns[0] == 0.0 and scaler.returns[1] == 2.0
