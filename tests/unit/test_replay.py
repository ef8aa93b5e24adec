"""The replay DataModule: learning starts, update-to-data ratio, FIFO capacity, terminated vs truncated stored
separately, and an exact sidecar round trip of the buffer (contents, order and write cursor)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

from lrl.contract import Schedule
from lrl.data.env import probe_env_spec
from lrl.data.replay import HostRandomSampler, ReplayDataModule
from lrl.recipe.schema import EnvConfig


class _Module(nn.Module):
    """Stands in for an algorithm: acts uniformly, has a device and a frame clock."""

    def __init__(self) -> None:
        super().__init__()
        self.clock, self.discount = 0, 0.99
        self.device = torch.device("cpu")
        self.spec = probe_env_spec(EnvConfig(id="Pendulum-v1"))

    def set_clock(self, clock: int) -> None:
        self.clock = clock

    def process_rollout(self, td: Any) -> Any:
        return td

    def relabel_rollout(self, td: Any) -> Any:  # no reward learner: the env's reward as it is
        return td

    def relabel_batch(self, td: Any) -> Any:
        return td

    def collection_policy(self) -> nn.Module:
        from lrl.data.replay import UniformPolicy

        return UniformPolicy(probe_env_spec(EnvConfig(id="Pendulum-v1")))


def _dm(tmp: Path | None = None, **kwargs: Any) -> ReplayDataModule:
    env = EnvConfig(id="Pendulum-v1", num_envs=2)
    args = {"buffer_size": 300, "batch_size": 16, "learning_starts": 64, "frames_per_step": 8,
            "updates_per_step": 3, **kwargs}
    dm = ReplayDataModule(env=env, spec=probe_env_spec(env), seed=0, budget=10_000, clock_unit="frames",
                          schedule=Schedule(), **args)
    dm.trainer = SimpleNamespace(lightning_module=_Module(), world_size=1, global_rank=0)  # type: ignore[assignment]
    dm.resume_dir = tmp
    return dm


def test_learning_starts_and_update_to_data_ratio() -> None:
    dm = _dm()
    stream = iter(dm.train_dataloader())
    first = next(stream)
    assert dm.clock == 64 and first.first and first.td.batch_size == torch.Size([16])  # nothing sampled before
    assert len(dm.buffer) == 64  # type: ignore[arg-type]
    assert not next(stream).first and not dm.at_boundary
    assert not next(stream).first and dm.at_boundary  # 3 updates per collection step
    assert next(stream).first and dm.clock == 72


def test_fifo_capacity_and_flags_stored_separately() -> None:
    dm = _dm(buffer_size=100, learning_starts=400)  # Pendulum truncates at 200 steps per env
    stream = iter(dm.train_dataloader())
    next(stream)
    buf: Any = dm.buffer
    assert len(buf) == 100 and dm.clock == 400
    data = buf.storage.get(torch.arange(100))
    assert data["next", "truncated"].any() and not data["next", "terminated"].any()
    assert torch.equal(data["next", "done"], data["next", "truncated"] | data["next", "terminated"])
    # the oldest transitions were overwritten first: the cursor is where the next write goes
    assert buf._writer._cursor == 400 % 100


def test_sidecar_round_trip_is_exact(tmp_path: Path) -> None:
    a = _dm(tmp_path, buffer_size=100)
    stream = iter(a.train_dataloader())
    for _ in range(3 * 20):  # 20 collection steps: 160 frames, the buffer has wrapped
        next(stream)
    assert a.at_boundary
    state = a.state_dict()
    a.write_sidecar(tmp_path)
    b = _dm(tmp_path, buffer_size=100)
    b.load_state_dict(state)
    b_stream = iter(b.train_dataloader())
    bufa, bufb = a.buffer, b.buffer
    assert len(bufa) == len(bufb) == 100  # type: ignore[arg-type]
    assert bufa._writer._cursor == bufb._writer._cursor  # type: ignore[union-attr]
    for key in ("observation", "action", ("next", "reward"), ("next", "truncated")):
        assert torch.equal(bufa.storage.get(torch.arange(100))[key],  # type: ignore[union-attr]
                           bufb.storage.get(torch.arange(100))[key])  # type: ignore[union-attr]
    for _ in range(9):  # and both continue identically: same samples, same new transitions
        x, y = next(stream), next(b_stream)
        assert torch.equal(x.td["observation"], y.td["observation"]) and x.clock == y.clock


def test_host_sampler_draws_on_the_cpu_generator_whatever_the_storage() -> None:
    """Indices come from the DataModule's CPU generator (the same stream for a buffer in host or GPU memory, so
    the checkpointed generator state resumes on any device) and land on the storage's device."""
    from tensordict import TensorDict
    from torchrl.data import LazyTensorStorage, ReplayBuffer

    gen = torch.Generator().manual_seed(7)
    sampler = HostRandomSampler()
    sampler.generator = gen
    buffer = ReplayBuffer(storage=LazyTensorStorage(100, device="cpu"), sampler=sampler)
    buffer.extend(TensorDict({"x": torch.arange(50.0)}, batch_size=[50]))
    state = gen.get_state()
    batch = buffer.sample(8)
    expected = torch.randint(50, (8,), generator=torch.Generator().set_state(state))
    assert torch.equal(batch["x"], expected.float())
    with pytest.raises(RuntimeError, match="empty"):
        ReplayBuffer(storage=LazyTensorStorage(10), sampler=sampler).sample(2)
