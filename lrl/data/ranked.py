"""What every data source shares (docs/contract.md): the :class:`lrl.contract.DataSource` defaults, the pull-based
stream, further named streams, and the per-rank checkpoint state (docs/contract.md).

Every rank has its own envs, collector, buffer and stream positions, so a DataModule's checkpoint state is a list
with one entry per rank, all-gathered so that rank 0 writes them all. On resume each rank takes its own entry; the
same number of processes must resume the run. A state that arrives before the source is built (Lightning restores
DataModules before ``train_dataloader``) waits in ``_pending_state`` until :meth:`RankedDataModule._restore_pending`.

Streams: ``data.streams: {name: {path: FILE, batch_size: N}}`` (or a Minari dataset, ``{dataset: ID_OR_DIR,
batch_size: N}``) adds named offline streams (demonstrations, preference pairs) to any source; every batch of the
main stream comes with one minibatch of each, in ``Batch.streams[name]``; each stream has its own boundary
(``Batch.stream_first[name]``: a new pass begins).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import torch
import torch.distributed as dist

from lrl.contract import ROLLOUT_KEYS, Batch, ClockUnit, Consumes, Schedule
from lrl.data.dataset import OfflineStream
from lrl.errors import RecipeError
from lrl.recipe.schema import EnvConfig
from lrl.spec import Spec


def gather(obj: Any) -> list[Any]:
    """``obj`` of every rank, in rank order."""
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def make_stream(name: str, seed: int, cfg: dict[str, Any]) -> OfflineStream:
    """One ``data.streams`` entry: a dataset file (``path``) or a Minari dataset (``dataset``, optionally
    ``max_samples``: its first N transitions), read at set-up."""
    if "dataset" not in cfg:
        return OfflineStream(name=name, seed=seed, **cfg)
    from lrl.data.minari_io import read_minari_first

    what = f"data.streams.{name}.dataset"
    loader = functools.partial(read_minari_first, cfg["dataset"], what, cfg.get("max_samples"))
    return OfflineStream(name=name, seed=seed, batch_size=cfg.get("batch_size", 256), loader=loader)


class RankedDataModule(L.LightningDataModule):
    """Base of lrl's data sources: implements :class:`lrl.contract.DataSource` for a source that may have a
    collector; subclasses provide ``clock``, ``at_boundary``, ``next_batch``, ``_rank_state``, ``_load_rank_state``.

    Class-level declarations, read by ``lrl validate`` without building anything:
    ``clock_units`` (the budget units it can count), ``needs_env``, ``provides`` (keys of its batches).
    """

    clock_units: ClassVar[tuple[ClockUnit, ...]] = ("frames",)
    needs_env: ClassVar[bool] = True
    provides: ClassVar[tuple[str, ...]] = ROLLOUT_KEYS
    collector: Any = None

    def __init__(self, *, seed: int, budget: int, clock_unit: ClockUnit, streams: dict[str, Any] | None) -> None:
        super().__init__()
        self.seed, self.budget, self.clock_unit = seed, budget, clock_unit
        self.world_size, self.rank = 1, 0
        self.final_clock = 0
        self.streams = {name: make_stream(name, seed + 7 * (i + 1), cfg)
                        for i, (name, cfg) in enumerate(sorted((streams or {}).items()))}
        self._pending_state: dict[str, Any] | None = None

    # --- declarations checked at validate time -------------------------------------------------------------------
    @classmethod
    def probe_spec(cls, env: EnvConfig | None, args: dict[str, Any]) -> Spec:
        """The spec of what this source yields: by default one env built and closed."""
        from lrl.data.env import probe_env_spec

        if env is None:
            raise RecipeError(f"data.name={cls.__name__}: needs an env: section")
        return probe_env_spec(env)

    @classmethod
    def check_args(cls, args: dict[str, Any], env: EnvConfig | None, schedule: Schedule, consumes: Consumes,
                   world: int | None, budget: int | None = None) -> None:
        """Relations between the resolved ``data:`` section, the env, the algorithm's schedule and what it consumes;
        ``world`` is the number of processes when the recipe fixes it, ``budget`` the run's length in its clock
        unit. One :class:`RecipeError` line."""
        if env is not None and world and env.num_envs % world:
            raise RecipeError(f"env.num_envs={env.num_envs} must be divisible by the number of processes ({world})")

    # --- DataSource ---------------------------------------------------------------------------------------------
    @property
    def clock(self) -> int:
        raise NotImplementedError  # each source counts its own unit

    @property
    def at_boundary(self) -> bool:
        raise NotImplementedError

    def end_rollout(self) -> None:
        """Nothing to drop by default (sources without rollouts)."""

    def acting_generator(self) -> torch.Generator | None:
        return getattr(self.collector, "generator", None)

    def recent_episodes(self) -> list[tuple[float, int]]:
        return list(self.collector.completed) if self.collector is not None else []

    def observation_stats(self) -> dict[str, Any] | None:
        norm = getattr(self.collector, "obs_normalizer", None)
        return None if norm is None else {"mean": norm.current.mean, "var": norm.current.var}

    def write_sidecar(self, dirpath: Path) -> Path | None:
        return None

    # --- batches ------------------------------------------------------------------------------------------------
    def next_batch(self) -> Batch:
        raise NotImplementedError

    def _progress_remaining(self) -> float:
        return max(0.0, 1.0 - self.clock / self.budget)

    def _setup_streams(self, device: torch.device) -> None:
        for stream in self.streams.values():
            stream.setup(self.rank, self.world_size, device)

    # --- checkpoint state ---------------------------------------------------------------------------------------
    def _rank_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def _load_rank_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def _shared_state(self) -> dict[str, Any]:
        """Entries of the checkpoint state common to all ranks, handed to every rank's ``_load_rank_state``."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        mine = {**self._rank_state(), "streams": {n: s.state_dict() for n, s in self.streams.items()}}
        ranks = gather(mine) if distributed() else [mine]
        return {"world_size": len(ranks), "ranks": ranks, **self._shared_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        trainer = self.trainer
        rank = trainer.global_rank if trainer is not None else 0
        world = trainer.world_size if trainer is not None else 1
        if state_dict["world_size"] != world:
            raise RecipeError(
                f"checkpoint was written by {state_dict['world_size']} processes; resume with the same "
                f"trainer.devices × trainer.num_nodes (got {world})"
            )
        shared = {k: v for k, v in state_dict.items() if k not in ("world_size", "ranks")}
        self._pending_state = {**state_dict["ranks"][rank], **shared}
        if self._built():
            self._restore_pending()

    def _built(self) -> bool:
        return self.collector is not None

    def _restore_pending(self) -> None:
        """Apply a checkpoint state that waited for the source to be built (call once it is)."""
        if self._pending_state is not None:
            state = self._pending_state
            self._load_rank_state(state)
            for name, stream_state in state.get("streams", {}).items():
                self.streams[name].load_state_dict(stream_state)
            self._pending_state = None


class BatchStream:
    """The train "dataloader": an endless iterator of :class:`Batch`; the budget ends the run."""

    def __init__(self, dm: RankedDataModule) -> None:
        self.dm = dm

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> Batch:
        batch = self.dm.next_batch()
        for name, stream in self.dm.streams.items():
            batch.stream_first[name] = stream.at_boundary
            batch.streams[name] = stream.next()
        return batch
