"""A live progress line: clock / budget (frames, steps, ...), rate, recent episode return, ETA (rank 0).

The rate (and the ETA from it) is taken over the last ``window_s`` seconds, not since the start: evaluation pauses,
a replay buffer's warm-up and the first rollout's set-up would otherwise keep it off for the whole run."""

from __future__ import annotations

import sys
import time
from collections import deque
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
    def __init__(self, budget: int, unit: str = "frames", interval_s: float | None = None,
                 window_s: float = 30.0) -> None:
        self.budget, self.unit = budget, unit
        self.tty = sys.stderr.isatty()
        self.interval = interval_s if interval_s is not None else (0.5 if self.tty else 15.0)
        self.window_s = window_s
        self._t0 = self._last = 0.0
        self._f0 = 0
        self._window: deque[tuple[float, int]] = deque()  # (time, clock) samples, the oldest >= window_s old

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = self._last = time.perf_counter()
        self._f0 = data_source(trainer).clock
        self._window = deque([(self._t0, self._f0)])

    def _sample(self, now: float, clock: int) -> None:
        """Keep one (time, clock) sample a second, back to the newest one at least ``window_s`` old."""
        window = self._window
        if now - window[-1][0] >= 1.0:
            window.append((now, clock))
        while len(window) > 1 and now - window[1][0] >= self.window_s:
            window.popleft()

    def rate(self, now: float, clock: int) -> float:
        """Clock units per second over the last ``window_s`` seconds (since the start, while younger than that)."""
        self._sample(now, clock)
        t0, c0 = self._window[0]
        return (clock - c0) / (now - t0) if now > t0 else 0.0

    def line(self, trainer: L.Trainer) -> str:
        source = data_source(trainer)
        now = time.perf_counter()
        frames, elapsed = source.clock, now - self._t0
        fps = self.rate(now, frames)
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
        if not trainer.is_global_zero:
            return
        self._sample(now, data_source(trainer).clock)
        if now - self._last < self.interval:
            return
        self._last = now
        end = "\r" if self.tty else "\n"
        sys.stderr.write(self.line(trainer) + end)
        sys.stderr.flush()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            sys.stderr.write(self.line(trainer) + "\n")
            sys.stderr.flush()
