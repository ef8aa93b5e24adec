"""What the on-policy and replay DataModules share: the minibatch record, the pull-based stream and the per-rank
checkpoint state (DESIGN.md §3, §6).

Every rank has its own envs, collector and (replay) buffer, so a DataModule's checkpoint state is a list with one
entry per rank, all-gathered so that rank 0 writes them all. On resume each rank takes its own entry; the same
number of processes must resume the run. A state that arrives before the collector exists (Lightning restores
DataModules before ``train_dataloader``) waits in ``_pending_state`` until :meth:`RankedDataModule._restore_pending`.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch.distributed as dist

from lrl.contract import Batch
from lrl.errors import RecipeError


def gather(obj: Any) -> list[Any]:
    """``obj`` of every rank, in rank order."""
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class RankedDataModule(L.LightningDataModule):
    """Per-rank checkpoint plumbing; subclasses provide ``_rank_state``, ``_load_rank_state`` and ``next_batch``."""

    collector: Any = None

    def __init__(self) -> None:
        super().__init__()
        self._pending_state: dict[str, Any] | None = None

    def _rank_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def _load_rank_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def _shared_state(self) -> dict[str, Any]:
        """Entries of the checkpoint state common to all ranks, handed to every rank's ``_load_rank_state``."""
        return {}

    def next_batch(self) -> Batch:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        mine = self._rank_state()
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
        if self.collector is not None:
            self._restore_pending()

    def _restore_pending(self) -> None:
        """Apply a checkpoint state that waited for the collector (call once the collector exists)."""
        if self._pending_state is not None:
            self._load_rank_state(self._pending_state)
            self._pending_state = None


class BatchStream:
    """The train "dataloader": an endless iterator of :class:`Batch`; the frame budget ends the run."""

    def __init__(self, dm: RankedDataModule) -> None:
        self.dm = dm

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> Batch:
        return self.dm.next_batch()
