"""A live progress line: frames / budget, frames per second, recent episode return, ETA (rank 0)."""

from __future__ import annotations

import sys
import time
from typing import Any

import lightning as L
import numpy as np


def _fmt_time(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class FrameProgress(L.Callback):
    def __init__(self, budget_frames: int, interval_s: float | None = None) -> None:
        self.budget = budget_frames
        self.tty = sys.stderr.isatty()
        self.interval = interval_s if interval_s is not None else (0.5 if self.tty else 15.0)
        self._t0 = self._last = 0.0
        self._f0 = 0
        self._window: list[tuple[float, int]] = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = self._last = time.perf_counter()
        self._f0 = trainer.datamodule.frames  # type: ignore[attr-defined]

    def line(self, trainer: L.Trainer) -> str:
        dm = trainer.datamodule  # type: ignore[attr-defined]
        frames, elapsed = dm.frames, time.perf_counter() - self._t0
        fps = (frames - self._f0) / elapsed if elapsed > 0 else 0.0
        recent = list(dm.collector.completed)[-20:] if dm.collector is not None else []
        ret = f"{np.mean([r for r, _ in recent]):9.2f}" if recent else "        -"
        eta = _fmt_time((self.budget - frames) / fps) if fps > 0 else "--:--"
        pct = 100.0 * min(frames, self.budget) / self.budget
        return (f"frames {frames:>10,}/{self.budget:,} ({pct:5.1f}%) | {fps:8.0f} fps | "
                f"return(20) {ret} | elapsed {_fmt_time(elapsed)} | eta {eta}")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        now = time.perf_counter()
        if not trainer.is_global_zero or now - self._last < self.interval:
            return
        self._last = now
        end = "\r" if self.tty else "\n"
        sys.stderr.write(self.line(trainer) + end)
        sys.stderr.flush()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            sys.stderr.write(self.line(trainer) + "\n")
            sys.stderr.flush()
