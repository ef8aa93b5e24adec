"""A live progress line: clock / budget (frames, steps, ...), rate, recent episode return, ETA (rank 0)."""

from __future__ import annotations

import sys
import time
from typing import Any

import lightning as L
import numpy as np

from lrl.contract import data_source


def _fmt_time(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class ClockProgress(L.Callback):
    def __init__(self, budget: int, unit: str = "frames", interval_s: float | None = None) -> None:
        self.budget, self.unit = budget, unit
        self.tty = sys.stderr.isatty()
        self.interval = interval_s if interval_s is not None else (0.5 if self.tty else 15.0)
        self._t0 = self._last = 0.0
        self._f0 = 0
        self._window: list[tuple[float, int]] = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = self._last = time.perf_counter()
        self._f0 = data_source(trainer).clock

    def line(self, trainer: L.Trainer) -> str:
        source = data_source(trainer)
        frames, elapsed = source.clock, time.perf_counter() - self._t0
        fps = (frames - self._f0) / elapsed if elapsed > 0 else 0.0
        recent = source.recent_episodes()[-20:]
        ret = f"{np.mean([r for r, _ in recent]):9.2f}" if recent else "        -"
        eta = _fmt_time((self.budget - frames) / fps) if fps > 0 else "--:--"
        pct = 100.0 * min(frames, self.budget) / self.budget
        rate = {"frames": "fps", "steps": "steps/s"}.get(self.unit, f"{self.unit}/s")
        return (f"{self.unit} {frames:>10,}/{self.budget:,} ({pct:5.1f}%) | {fps:8.0f} {rate} | "
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
