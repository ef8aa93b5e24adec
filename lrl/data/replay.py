"""Off-policy experience as a LightningDataModule: collector → TorchRL replay buffer → minibatches (docs/contract.md).

Each collection step, this rank's collector steps ``frames_per_step / world_size`` frames (uniformly random
actions until ``learning_starts`` frames, then the module's ``collection_policy()``) and the transitions go into
this rank's TorchRL ``ReplayBuffer`` (``LazyTensorStorage``, or ``LazyMemmapStorage`` for buffers larger than
memory). Once ``learning_starts`` frames have been collected, the stream yields ``updates_per_step`` minibatches
of ``batch_size / world_size`` transitions per collection step: the update-to-data ratio is
``updates_per_step / frames_per_step``. All numbers are global: on N processes each rank keeps a
buffer of ``buffer_size / N`` transitions, collects ``1/N`` of the frames and samples ``1/N`` of each batch, and
DDP averages the gradients.

A buffer holds ``observation``, ``action`` and ``next/{observation, reward, terminated, truncated, done}``; the
targets bootstrap through ``truncated`` and not through ``terminated`` (``next/observation`` is the true final
observation of an episode that ended).

Resume is exact: the DataModule's state (counters, the sampling generator, RNG states, the collector with its
envs) is in the checkpoint, and every rank writes its buffer to a sidecar file next to it
(``checkpoints/buffer-<frames>.rank<r>.pt``, atomically, before the checkpoint itself appears), which the resumed
run loads back, write cursor included.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from tensordict import TensorDict
from torch import nn
from torchrl.data import LazyMemmapStorage, LazyTensorStorage, RandomSampler, ReplayBuffer

from lrl.contract import Batch, ClockUnit, Consumes, Schedule, learner
from lrl.data.collector import VecEnvCollector, make_collector
from lrl.data.curriculum import EpisodeExtras
from lrl.data.env import make_vec_env
from lrl.data.frames import FrameReplay
from lrl.data.normalize import ObsNormalizer
from lrl.data.ranked import BatchStream, RankedDataModule, distributed, gather
from lrl.data.rng import rng_state, set_rng_state, trainer_device
from lrl.errors import LrlError, RecipeError
from lrl.recipe.schema import EnvConfig
from lrl.spec import EnvSpec

KEYS = ["observation", "action", ("next", "observation"), ("next", "reward"), ("next", "terminated"),
        ("next", "truncated"), ("next", "done")]


class UniformPolicy(nn.Module):
    """Uniformly random actions over the action space, drawn from the collector's generator (warm-up)."""

    low: torch.Tensor
    high: torch.Tensor

    def __init__(self, spec: EnvSpec) -> None:
        super().__init__()
        self.spec = spec
        low = torch.tensor(spec.action_low or [0.0], dtype=torch.float32)
        high = torch.tensor(spec.action_high or [1.0], dtype=torch.float32)
        self.register_buffer("low", low, persistent=False)
        self.register_buffer("high", high, persistent=False)

    def forward(self, obs: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        n = obs.shape[0]
        if self.spec.action_kind == "discrete":
            action = torch.randint(self.spec.action_dim, (n,), generator=generator, device=obs.device)
        else:
            u = torch.rand((n, self.spec.action_dim), generator=generator, device=obs.device)
            action = self.low.to(obs.device) + (self.high - self.low).to(obs.device) * u
        return {"action": action}


def sidecar_path(dirpath: Path, stem: str, rank: int) -> Path:
    return Path(dirpath) / f"{stem}.rank{rank}.pt"


class ReplayDataModule(RankedDataModule):
    clock_units: ClassVar[tuple[ClockUnit, ...]] = ("frames",)

    def __init__(self, *, env: EnvConfig, spec: EnvSpec, seed: int, budget: int, clock_unit: ClockUnit,
                 schedule: Schedule, buffer_size: int = 1_000_000, batch_size: int = 256, learning_starts: int = 100,
                 frames_per_step: int = 1, updates_per_step: int = 1, random_warmup: bool = True,
                 storage: Literal["memory", "memmap"] = "memory", buffer_device: str | None = None,
                 streams: dict[str, Any] | None = None) -> None:
        """
        Args:
            buffer_size: replay capacity in transitions, global (each rank keeps ``buffer_size / world_size``);
                the oldest transitions are overwritten first (FIFO, Rossi §2.3).
            batch_size: transitions per gradient update, global.
            learning_starts: frames collected before the first update; nothing is sampled before.
            frames_per_step: frames collected per collection step, global (a multiple of ``env.num_envs``).
            updates_per_step: gradient updates per collection step (update-to-data ratio
                ``updates_per_step / frames_per_step``).
            random_warmup: act uniformly at random until ``learning_starts`` frames (SB3's behaviour).
            storage: ``memory`` (``LazyTensorStorage``) or ``memmap`` (``LazyMemmapStorage``, in a temporary dir).
            buffer_device: where the buffer lives (default: the module's device).
            streams: further named offline streams, ``{name: {path, batch_size}}`` (:mod:`lrl.data.ranked`).
        """
        super().__init__(seed=seed, budget=budget, clock_unit=clock_unit, streams=streams)
        self.env_cfg, self.spec = env, spec
        self.buffer_size, self.batch_size, self.learning_starts = buffer_size, batch_size, learning_starts
        self.frames_per_step, self.updates_per_step = frames_per_step, updates_per_step
        self.random_warmup, self.storage_kind, self.buffer_device = random_warmup, storage, buffer_device
        self.collector: VecEnvCollector | None = None
        self.buffer: ReplayBuffer | None = None
        self.frames: FrameReplay | None = None  # Atari frame stacks: each frame stored once (lrl/data/frames.py)
        self.steps = 0  # collection steps taken on this rank
        self.resume_dir: Path | None = None  # set by the launcher when resuming: where the sidecars are
        self._queue: list[TensorDict] = []
        self._policy: Any = None
        self._uniform = UniformPolicy(spec)
        self._sample_gen = torch.Generator()
        self._sample_gen.manual_seed(seed + 15485863)
        # env.shaping / env.curriculum: shaped returns, the curriculum's stage and its advances
        self.extras = EpisodeExtras(env, budget) if EpisodeExtras.wanted(env) else None

    # --- set-up -----------------------------------------------------------------------------------------
    @classmethod
    def check_args(cls, args: dict[str, Any], env: EnvConfig | None, schedule: Schedule, consumes: Consumes,
                   world: int | None, budget: int | None = None) -> None:
        super().check_args(args, env, schedule, consumes, world, budget)
        assert env is not None
        w, n = world or 1, env.num_envs
        if args["frames_per_step"] % n:
            raise RecipeError(f"data.frames_per_step={args['frames_per_step']} must be a multiple of env.num_envs={n}")
        if args["batch_size"] % w or args["buffer_size"] % w:
            raise RecipeError(f"data.batch_size={args['batch_size']} and data.buffer_size={args['buffer_size']} must "
                              f"be divisible by the number of processes ({w})")
        if budget is not None and args["learning_starts"] >= budget:
            raise RecipeError(f"data.learning_starts={args['learning_starts']} must be below budget.frames={budget}: "
                              "the random warm-up would run past the budget and nothing would be learned")
        if env.normalize_reward:
            raise RecipeError("env.normalize_reward is not supported with a replay buffer (stored rewards would be "
                              "scaled by statistics that keep changing); scale rewards in the algorithm instead")

    def _check_sizes(self) -> None:
        args = {"frames_per_step": self.frames_per_step, "batch_size": self.batch_size, "buffer_size": self.buffer_size,
                "learning_starts": self.learning_starts}
        self.check_args(args, self.env_cfg, Schedule(), Consumes(sources=()), self.world_size, self.budget)

    def train_dataloader(self) -> BatchStream:
        trainer = self.trainer
        assert trainer is not None
        module = learner(trainer)
        device = trainer.lightning_module.device
        self.world_size, self.rank = trainer.world_size, trainer.global_rank
        self._check_sizes()
        self._setup_streams(device)
        if self.collector is None:
            cfg, local_envs = self.env_cfg, self.env_cfg.num_envs // self.world_size
            first = self.seed + self.rank * local_envs  # seed + global env index
            self._policy = module.collection_policy()
            self.collector = make_collector(
                "lean", make_vec_env(cfg, local_envs), self.spec, self._policy,
                steps_per_env=self.frames_per_step // cfg.num_envs,
                env_seeds=[first + i for i in range(local_envs)], device=device,
                obs_normalizer=ObsNormalizer(self.spec.obs_shape, cfg.clip_obs) if cfg.normalize_obs else None,
            )
            self.buffer = self._make_buffer(device)
            if self.shares_frames:
                assert cfg.atari is not None
                self.frames = FrameReplay(self.buffer, local_envs, cfg.atari.frame_stack, self._sample_gen)
            if self.extras is not None:
                self.extras.attach(self.collector)
            self._restore_pending()
        return BatchStream(self)

    @property
    def shares_frames(self) -> bool:
        """Atari frame stacks are stored a frame at a time (:mod:`lrl.data.frames`)."""
        atari = self.env_cfg.atari
        return self.spec.obs_kind == "image" and atari is not None and atari.frame_stack > 1

    def _make_buffer(self, device: torch.device) -> ReplayBuffer:
        capacity = self.buffer_size // self.world_size
        where = torch.device(self.buffer_device) if self.buffer_device else device
        if self.storage_kind == "memmap":
            scratch = tempfile.mkdtemp(prefix=f"lrl-replay-rank{self.rank}-")
            storage: Any = LazyMemmapStorage(capacity, scratch_dir=scratch, device=where)
        else:
            storage = LazyTensorStorage(capacity, device=where)
        sampler = HostRandomSampler()
        sampler.generator = self._sample_gen
        return ReplayBuffer(storage=storage, sampler=sampler)

    def teardown(self, stage: str) -> None:
        if self.collector is not None:
            self.final_clock = self.clock
            if self.extras is not None:
                self.extras.log(self.trainer, self.clock)  # the last points
            self.collector.shutdown()
            self.collector = None

    # --- the clock ----------------------------------------------------------------------------------------
    @property
    def clock(self) -> int:
        """Global environment frames collected so far."""
        return (self.collector.frames if self.collector is not None else 0) * self.world_size

    @property
    def at_boundary(self) -> bool:
        """True when every update of the current collection step has been handed out."""
        return not self._queue

    # --- producing batches --------------------------------------------------------------------------------
    def _collect(self) -> list[tuple[float, int]]:
        """Collection steps until ``learning_starts`` is reached (at least one); returns finished episodes."""
        assert self.collector is not None and self.buffer is not None
        module = learner(self.trainer)
        episodes: list[tuple[float, int]] = []
        while True:
            warm = self.random_warmup and self.clock < self.learning_starts
            self.collector.policy = self._uniform if warm else self._policy
            module.set_clock(self.clock)  # exploration schedules act on the current clock
            td = module.relabel_rollout(self.collector.rollout())  # rlhf: never store the env's reward
            norm = self.collector.obs_normalizer
            if norm is not None:
                norm.sync(gather if distributed() else None)
            if self.frames is not None:
                self.frames.extend(td)
            else:
                self.buffer.extend(td.reshape(-1).select(*KEYS))
            self.steps += 1
            finished = self.collector.pop_episodes()
            if self.extras is not None:
                self.extras.after_collect(self.collector, finished, self.clock, self.trainer,
                                          gather if distributed() else None)
            episodes += finished
            if self.clock >= self.learning_starts:
                return episodes

    def next_batch(self) -> Batch:
        first = not self._queue
        episodes = self._collect() if first else []
        if first:
            assert self.buffer is not None
            per_rank = self.batch_size // self.world_size
            # one draw for all updates of this step: nothing is added in between, so this is the same as drawing
            # each minibatch separately, at a fraction of TorchRL's per-call cost
            n = per_rank * self.updates_per_step
            drawn = self.frames.sample(n) if self.frames is not None else self.buffer.sample(n)
            self._queue = list(drawn.split(per_rank))
        td = learner(self.trainer).relabel_batch(self._queue.pop(0))  # rlhf: always the current r̂
        return Batch(td, self.clock, self._progress_remaining(), self.steps, first, episodes)

    # --- checkpoint state ---------------------------------------------------------------------------------
    @property
    def sidecar_stem(self) -> str:
        return f"buffer-{self.clock:010d}"

    def _rank_state(self) -> dict[str, Any]:
        if not self.at_boundary:
            raise RuntimeError("replay checkpoints are taken between collection steps only")
        return {
            "collector": self.collector.state_dict() if self.collector is not None else None,
            "sample_gen": self._sample_gen.get_state(),
            "steps": self.steps,
            "buffer_len": len(self.buffer) if self.buffer is not None else 0,
            "rng": rng_state(trainer_device(self)),
            "extras": self.extras.state_dict() if self.extras is not None else None,
        }

    def _load_rank_state(self, state: dict[str, Any]) -> None:
        if state["collector"] is not None and self.collector is not None:
            self.collector.load_state_dict(state["collector"])
            if self.extras is not None:
                self.extras.load_state_dict(state.get("extras"))
                self.extras.attach(self.collector)  # an env that could not be pickled restarts at stage 0
        self._sample_gen.set_state(state["sample_gen"])
        self.steps = state["steps"]
        set_rng_state(state["rng"], trainer_device(self))
        if state["buffer_len"]:
            self._load_sidecar(state["buffer_stem"], state["buffer_len"])

    def _shared_state(self) -> dict[str, Any]:
        return {"buffer_stem": self.sidecar_stem}

    # --- the buffer sidecar (one file per rank, next to the checkpoint) -----------------------------------
    def write_sidecar(self, dirpath: Path) -> Path | None:
        """Write this rank's buffer (filled part + write cursor) atomically; called by every rank at a save."""
        if self.buffer is None:
            return None
        path = sidecar_path(dirpath, self.sidecar_stem, self.rank)
        n = len(self.buffer)
        storage: Any = self.buffer.storage
        data = storage.get(torch.arange(n)).to("cpu").to_dict() if n else {}
        writer: Any = self.buffer.writer  # TorchRL's writer: its cursor is not in a public API
        payload = {"len": n, "cursor": writer._cursor, "write_count": writer._write_count, "data": data,
                   "frames": self.frames.state_dict() if self.frames is not None else None}
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save(payload, tmp)
        os.replace(tmp, path)
        return path

    def _load_sidecar(self, stem: str, expected_len: int) -> None:
        assert self.buffer is not None
        if self.resume_dir is None:
            raise LrlError("this checkpoint needs its replay-buffer files; resume it with `lrl resume`")
        path = sidecar_path(self.resume_dir, stem, self.rank)
        if not path.is_file():
            raise LrlError(f"replay buffer of rank {self.rank} not found ({path}); it is written next to each "
                           "checkpoint: resume from a checkpoint whose buffer files are there")
        payload = torch.load(path, map_location="cpu", weights_only=False)
        if payload["len"] != expected_len:
            raise LrlError(f"replay buffer {path} holds {payload['len']} transitions, the checkpoint expects "
                           f"{expected_len}; the file belongs to another run")
        self.buffer.empty()
        device = self.buffer.storage.device if hasattr(self.buffer.storage, "device") else "cpu"
        self.buffer.extend(TensorDict.from_dict(payload["data"], batch_size=[payload["len"]]).to(device))
        writer: Any = self.buffer.writer
        writer._cursor, writer._write_count = payload["cursor"], payload["write_count"]
        if self.frames is not None:
            self.frames.load_state_dict(payload["frames"])


class HostRandomSampler(RandomSampler):
    """Uniform indices drawn on the CPU with the DataModule's generator, then moved to the storage's device.

    TorchRL's ``RandomSampler`` draws on the storage's device with the buffer's generator, which fails for a buffer
    in GPU memory with a CPU generator and would make the checkpointed RNG state device-specific. Drawing on the
    host keeps one generator whose state resumes on any device, and the same minibatches on CPU and GPU.
    """

    generator: torch.Generator

    def sample(self, storage: Any, batch_size: int) -> tuple[torch.Tensor, dict[str, Any]]:
        if len(storage) == 0:
            raise RuntimeError("cannot sample from an empty replay buffer")
        index = torch.randint(len(storage), (batch_size,), generator=self.generator)
        return index.to(getattr(storage, "device", None) or "cpu", non_blocking=True), {}
