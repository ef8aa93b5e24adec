"""The budget, periodic checkpoints, last.ckpt and graceful SIGINT/SIGTERM, in the recipe's clock
(env frames, gradient steps, ...; docs/contract.md §4).

All decisions are taken at the data source's boundaries, where the DataModule's state says exactly what comes next.
Under DDP the stop request (a signal seen by any rank) is all-reduced there, so every rank stops at the same
step and takes part in the same ``trainer.save_checkpoint`` call. Files are written to a temporary name and
renamed, so a hard kill never leaves a half-written checkpoint; it loses at most the work since the last one.

Besides the clock's ``every``, ``last.ckpt`` is written on the wall clock (``every_minutes`` since the last
checkpoint; rank 0's clock decides, carried to the other ranks in the same all-reduce as the stop request) and
after a new run's first rollout, so a run killed early can still be resumed (docs/runs.md).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import time
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
    def __init__(self, dirpath: Path, budget: int, every: int = 0, unit: str = "frames", every_minutes: float = 0.0,
                 first: bool = False) -> None:
        self.dirpath, self.budget, self.every, self.unit = Path(dirpath), budget, every, unit
        self.every_s = 60.0 * every_minutes  # 0: no wall-clock checkpoints
        self.first = first  # last.ckpt after the first rollout (a new run; a resumed one has its checkpoint)
        self._last_save = time.monotonic()
        self._transient: Path | None = None  # this rank's replay sidecar that only last.ckpt refers to
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
        self._last_save = time.monotonic()
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old_handlers[sig] = signal.getsignal(sig)
            signal.signal(sig, self._on_signal)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers.clear()

    # --- the boundary decision -----------------------------------------------------------------------------
    def _agree(self, stop: bool, timed: bool, trainer: L.Trainer, pl_module: L.LightningModule) -> tuple[bool, bool]:
        """(stop requested on any rank, wall-clock checkpoint due on rank 0): the same answer on every rank."""
        if not (dist.is_available() and dist.is_initialized()):
            return stop, timed
        t = torch.tensor([float(stop), float(timed and trainer.is_global_zero)], device=pl_module.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t[0].item()), bool(t[1].item())

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        source = data_source(trainer)
        if not source.at_boundary:
            return
        clock = source.clock
        timed = bool(self.every_s) and time.monotonic() - self._last_save >= self.every_s
        stop, timed = self._agree(self.stop_requested, timed, trainer, pl_module)
        self.reached_budget = clock >= self.budget
        periodic = bool(self.every) and clock // self.every > self._bucket
        if periodic:
            self._bucket = clock // self.every
            path = self.save(trainer, ckpt_name(clock, self.unit))
            if trainer.is_global_zero:
                _atomic_copy(path, self.dirpath / "last.ckpt")
        elif stop or self.reached_budget or timed or self.first:
            self.save(trainer, "last.ckpt")
        self.first = False
        if stop or self.reached_budget:
            self.interrupted = stop and not self.reached_budget
            trainer.should_stop = True

    def save(self, trainer: L.Trainer, name: str) -> Path:
        path = self.dirpath / name
        tmp = path.with_name(f".{name}.tmp")
        trainer.save_checkpoint(tmp, weights_only=False)  # collective: every rank contributes its state, rank 0 writes
        sidecar = data_source(trainer).write_sidecar(self.dirpath)  # every rank its replay buffer, before the ckpt
        trainer.strategy.barrier("lrl.checkpoint")
        if trainer.is_global_zero:
            os.replace(tmp, path)
        trainer.strategy.barrier("lrl.checkpoint.done")
        # a buffer that only the previous last.ckpt referred to is garbage now; periodic checkpoints keep theirs
        if self._transient is not None and self._transient != sidecar:
            self._transient.unlink(missing_ok=True)
        self._transient = sidecar if name == "last.ckpt" else None
        self._last_save = time.monotonic()
        return path


def _atomic_copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
