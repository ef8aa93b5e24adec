"""On-policy experience as a LightningDataModule (docs/contract.md).

Each rollout: the collector steps ``frames_per_batch / world_size`` frames on this rank with the module's
current ``collection_policy()``, the module annotates it (``process_rollout``: values, advantages, ...), and
the stream yields the algorithm's schedule (:class:`lrl.contract.Schedule`, from its ``epochs`` and
``minibatch_size``): ``epochs`` passes of shuffled minibatches of ``minibatch_size / world_size`` samples (or the
whole rollout when ``minibatch_size`` is None). The module pulls batches itself (``training_step(self,
dataloader_iter)``), so nothing is collected ahead of an update and a checkpoint taken at a rollout boundary
holds exactly what comes next.

``complete_episodes=True`` makes every rollout hold whole episodes only (see :mod:`lrl.data.collector`):
Monte-Carlo policy gradients need G(τ) and per-episode importance ratios. Rollouts then differ in length
between rollouts and ranks, so the global frame count is the sum of what the ranks actually collected
(all-gathered after each rollout), and every rank does the same number of optimiser steps: ``epochs`` whole-rollout
batches (``minibatch_size: null``; padding included, with the ``mask`` key) or, with minibatches, the same number
of minibatches on every rank, ``round(global rollout frames / minibatch_size)``, each a shuffled share of this
rank's real (unpadded) steps.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from tensordict import TensorDict

from lrl.contract import Batch, ClockUnit, Consumes, Schedule, learner
from lrl.data.collector import VecEnvCollector, make_collector
from lrl.data.curriculum import EpisodeExtras
from lrl.data.env import make_vec_env
from lrl.data.normalize import ObsNormalizer, RewardScaler
from lrl.data.ranked import BatchStream, RankedDataModule, distributed, gather
from lrl.data.rng import rng_state, set_rng_state, trainer_device
from lrl.errors import RecipeError
from lrl.recipe.schema import EnvConfig
from lrl.spec import EnvSpec


class OnPolicyDataModule(RankedDataModule):
    clock_units: ClassVar[tuple[ClockUnit, ...]] = ("frames",)

    def __init__(self, *, env: EnvConfig, spec: EnvSpec, seed: int, budget: int, clock_unit: ClockUnit,
                 schedule: Schedule, frames_per_batch: int = 2048,
                 collector: Literal["lean", "torchrl"] = "lean", complete_episodes: bool = False,
                 streams: dict[str, Any] | None = None) -> None:
        """
        Args:
            frames_per_batch: frames per rollout, global across ranks (``num_envs × steps per env``); with
                ``complete_episodes`` the least number of frames, each env taking at least its share.
            collector: ``lean`` (in-process, fast, exact resume) or ``torchrl`` (TorchRL's stock ``Collector``).
            complete_episodes: rollouts of whole episodes only, each started and finished under the current
                policy (``mask`` marks the real steps); lean collector and sync vectorisation only.
            streams: further named offline streams, ``{name: {path, batch_size}}`` (:mod:`lrl.data.ranked`).
        """
        super().__init__(seed=seed, budget=budget, clock_unit=clock_unit, streams=streams)
        self.env_cfg, self.spec = env, spec
        self.frames_per_batch = frames_per_batch
        self.minibatch_size, self.epochs = schedule.minibatch_size, schedule.epochs
        self.collector_kind = collector
        self.complete_episodes = complete_episodes
        self._frames = 0  # global frames, summed over ranks (complete_episodes only)
        self.collector: VecEnvCollector | None = None
        self.rollouts = 0
        self._queue: list[torch.Tensor] = []
        self._flat: TensorDict | None = None
        self._perm_gen = torch.Generator()
        self._perm_gen.manual_seed(seed + 104729)
        # env.shaping / env.curriculum: shaped returns, the curriculum's stage and its advances
        self.extras = EpisodeExtras(env, budget) if EpisodeExtras.wanted(env) else None

    # --- set-up -----------------------------------------------------------------------------------------
    @classmethod
    def check_args(cls, args: dict[str, Any], env: EnvConfig | None, schedule: Schedule, consumes: Consumes,
                   world: int | None, budget: int | None = None) -> None:
        super().check_args(args, env, schedule, consumes, world, budget)
        assert env is not None
        w, n, fpb, mb = world or 1, env.num_envs, args["frames_per_batch"], schedule.minibatch_size
        if fpb % n:
            raise RecipeError(f"data.frames_per_batch={fpb} must be a multiple of env.num_envs={n}")
        if consumes.whole_episodes and not args["complete_episodes"]:
            raise RecipeError("this algorithm needs whole episodes in every rollout: set data.complete_episodes=true")
        if args["complete_episodes"]:
            if args["collector"] != "lean":
                raise RecipeError("data.complete_episodes=true needs data.collector=lean (it steps the sub-envs one "
                                  "by one); remove data.collector=torchrl")
            if env.vectorization != "sync":
                raise RecipeError("data.complete_episodes=true needs env.vectorization=sync")
            if mb is not None and mb % w:
                raise RecipeError(f"algo.minibatch_size={mb} must be divisible by the number of processes ({w})")
        elif mb is not None and (mb % w or fpb % mb):
            raise RecipeError(f"algo.minibatch_size={mb} must divide data.frames_per_batch={fpb} and be divisible by "
                              f"the number of processes ({w})")

    def _check_sizes(self) -> None:
        args = {"frames_per_batch": self.frames_per_batch, "complete_episodes": self.complete_episodes,
                "collector": self.collector_kind}
        self.check_args(args, self.env_cfg, Schedule(self.epochs, self.minibatch_size), Consumes(sources=()),
                        self.world_size)

    def train_dataloader(self) -> BatchStream:
        trainer = self.trainer
        assert trainer is not None
        module = learner(trainer)
        device = trainer.lightning_module.device
        self.world_size, self.rank = trainer.world_size, trainer.global_rank
        self._check_sizes()
        self._setup_streams(device)
        if self.collector is None:
            local_envs = self.env_cfg.num_envs // self.world_size
            first = self.seed + self.rank * local_envs  # seed + global env index
            cfg = self.env_cfg
            obs_norm = ObsNormalizer(self.spec.obs_shape, cfg.clip_obs) if cfg.normalize_obs else None
            gamma = module.discount if module.discount is not None else 0.99
            rew_scale = RewardScaler(local_envs, gamma, cfg.clip_reward) if cfg.normalize_reward else None
            self.collector = make_collector(
                self.collector_kind, make_vec_env(cfg, local_envs), self.spec, module.collection_policy(),
                steps_per_env=self.frames_per_batch // cfg.num_envs,
                env_seeds=[first + i for i in range(local_envs)], device=device,
                obs_normalizer=obs_norm, reward_scaler=rew_scale,
                **({"complete_episodes": True} if self.complete_episodes else {}),
            )
            if self.extras is not None:
                self.extras.attach(self.collector)
            self._restore_pending()
        return BatchStream(self)

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
        if self.complete_episodes:
            return self._frames
        return (self.collector.frames if self.collector is not None else 0) * self.world_size

    @property
    def at_boundary(self) -> bool:
        """True when every minibatch of the current rollout has been handed out (or none was collected yet)."""
        return not self._queue

    def end_rollout(self) -> None:
        """Drop the rest of the current rollout's minibatches (e.g. a PPO KL early stop)."""
        self._queue.clear()

    # --- producing batches --------------------------------------------------------------------------------
    def _collect(self) -> list[tuple[float, int]]:
        """Collect and annotate the next rollout; queue its minibatch indices; return finished episodes."""
        assert self.collector is not None
        module = learner(self.trainer)
        module.set_clock(self.clock)  # exploration schedules (e.g. SARSA's ε) act on the current clock
        before = self.collector.frames
        td = self.collector.rollout()
        all_ranks = gather if distributed() else None
        rollout_frames = self.collector.frames - before
        if self.complete_episodes:  # ranks collect different numbers of frames: sum them
            rollout_frames = sum(all_ranks(rollout_frames)) if all_ranks else rollout_frames
            self._frames += rollout_frames
        for norm in (self.collector.obs_normalizer, self.collector.reward_scaler):
            if norm is not None:
                norm.sync(all_ranks)
        td = module.relabel_rollout(td)  # rlhf: the learned reward replaces the env's (docs/rlhf.md)
        self._flat = module.process_rollout(td).reshape(-1)
        n = self._flat.shape[0]
        if self.complete_episodes and self.minibatch_size is not None:
            real = torch.nonzero(self._flat["mask"].cpu()).squeeze(-1)
            chunks = max(1, round(rollout_frames / self.minibatch_size))  # the same on every rank
            self._queue = [real[perm] for _ in range(self.epochs)
                           for perm in torch.randperm(len(real), generator=self._perm_gen).tensor_split(chunks)]
        elif self.minibatch_size is None:
            self._queue = [torch.arange(n) for _ in range(self.epochs)]
        else:
            mb = self.minibatch_size // self.world_size
            self._queue = [idx for _ in range(self.epochs)
                           for idx in torch.randperm(n, generator=self._perm_gen).split(mb)]
        self.rollouts += 1
        episodes = self.collector.pop_episodes()
        if self.extras is not None:
            self.extras.after_collect(self.collector, episodes, self.clock, self.trainer, all_ranks)
        return episodes

    def next_batch(self) -> Batch:
        first = not self._queue
        episodes = self._collect() if first else []
        assert self._flat is not None
        idx = self._queue.pop(0)
        td = self._flat if self.minibatch_size is None else self._flat[idx.to(self._flat.device)]
        return Batch(td, self.clock, self._progress_remaining(), self.rollouts, first, episodes)

    # --- checkpoint state (per rank; gathered so rank 0 writes all of them) --------------------------
    def _rank_state(self) -> dict[str, Any]:
        if not self.at_boundary:
            raise RuntimeError("on-policy checkpoints are taken at rollout boundaries only")
        return {
            "collector": self.collector.state_dict() if self.collector is not None else None,
            "perm_gen": self._perm_gen.get_state(),
            "rollouts": self.rollouts,
            "frames": self._frames,
            "rng": rng_state(trainer_device(self)),
            "extras": self.extras.state_dict() if self.extras is not None else None,
        }

    def _load_rank_state(self, state: dict[str, Any]) -> None:
        if state["collector"] is not None and self.collector is not None:
            self.collector.load_state_dict(state["collector"])
            if self.extras is not None:
                self.extras.load_state_dict(state.get("extras"))
                self.extras.attach(self.collector)  # an env that could not be pickled restarts at stage 0
        self._perm_gen.set_state(state["perm_gen"])
        self.rollouts = state["rollouts"]
        self._frames = state.get("frames", 0)
        set_rng_state(state["rng"], trainer_device(self))
