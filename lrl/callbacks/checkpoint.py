"""The budget, periodic checkpoints, last.ckpt and graceful SIGINT/SIGTERM, in the recipe's clock
(env frames, gradient steps, ...; docs/contract.md §4).

All decisions are taken at the data source's boundaries, where the DataModule's state says exactly what comes next.
Under DDP the stop request (a signal seen by any rank) is all-reduced there, so every rank stops at the same
step and takes part in the same ``trainer.save_checkpoint`` call. Files are written to a temporary name and
renamed, so a hard kill never leaves a half-written checkpoint; it loses at most the frames since the last
periodic one.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
import torch
import torch.distributed as dist

from lrl.contract import data_source

log = logging.getLogger(__name__)


def ckpt_name(clock: int, unit: str = "frames") -> str:
    return f"{unit}-{clock:010d}.ckpt"


class ClockCheckpoint(L.Callback):
    def __init__(self, dirpath: Path, budget: int, every: int = 0, unit: str = "frames") -> None:
        self.dirpath, self.budget, self.every, self.unit = Path(dirpath), budget, every, unit
        self.stop_requested = False
        self.interrupted = False
        self.reached_budget = False
        self._bucket = 0
        self._old_handlers: dict[int, Any] = {}

    # --- signals -------------------------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stop_requested and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: stop now, without a checkpoint
        self.stop_requested = True
        log.warning("received %s: stopping at the end of this rollout and writing last.ckpt "
                    "(Ctrl-C again to abort without saving)", signal.Signals(signum).name)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._bucket = data_source(trainer).clock // self.every if self.every else 0
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old_handlers[sig] = signal.getsignal(sig)
            signal.signal(sig, self._on_signal)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers.clear()

    # --- the boundary decision -----------------------------------------------------------------------------
    def _any_rank(self, flag: bool, pl_module: L.LightningModule) -> bool:
        if not (dist.is_available() and dist.is_initialized()):
            return flag
        t = torch.tensor([float(flag)], device=pl_module.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        source = data_source(trainer)
        if not source.at_boundary:
            return
        clock = source.clock
        stop = self._any_rank(self.stop_requested, pl_module)
        self.reached_budget = clock >= self.budget
        periodic = bool(self.every) and clock // self.every > self._bucket
        if periodic:
            self._bucket = clock // self.every
            path = self.save(trainer, ckpt_name(clock, self.unit))
            if trainer.is_global_zero:
                _atomic_copy(path, self.dirpath / "last.ckpt")
        if stop or self.reached_budget:
            if not periodic:
                self.save(trainer, "last.ckpt")
            self.interrupted = stop and not self.reached_budget
            trainer.should_stop = True

    def save(self, trainer: L.Trainer, name: str) -> Path:
        path = self.dirpath / name
        tmp = path.with_name(f".{name}.tmp")
        trainer.save_checkpoint(tmp, weights_only=False)  # collective: every rank contributes its state, rank 0 writes
        data_source(trainer).write_sidecar(self.dirpath)  # every rank its replay buffer, before the checkpoint appears
        trainer.strategy.barrier("lrl.checkpoint")
        if trainer.is_global_zero:
            os.replace(tmp, path)
        trainer.strategy.barrier("lrl.checkpoint.done")
        return path


def _atomic_copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
