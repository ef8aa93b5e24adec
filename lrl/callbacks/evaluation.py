"""Evaluation of the deterministic policy every N clock units on separate envs (rank 0 only): ``eval/return_mean``,
``eval/return_std`` and, where the env reports success, ``eval/success_rate``; each result also goes to the console as
one line (``eval @ 50,176 frames: return 187.3 ± 12.1 (20 episodes)``); with ``eval.video``, one episode of the
policy as the run's artifact ``videos/eval-<clock>.gif`` (:mod:`lrl.video`)."""

from __future__ import annotations

import abc
import logging
import sys
from collections.abc import Callable
from typing import Any

import lightning as L

from lrl.contract import data_source
from lrl.evaluate import Policy, evaluate
from lrl.recipe.schema import EnvConfig, EvalConfig
from lrl.video import EvalVideos

log = logging.getLogger("lrl")

EVAL_SEED_OFFSET = 1_000_000  # evaluation envs never share seeds with training envs


class PeriodicEvaluation(L.Callback, abc.ABC):
    """When an evaluation runs: at every ``eval.every`` clock units crossed at a data boundary, and at the end when
    the run finished its budget (``eval.final``). Subclasses say what an evaluation is (:meth:`run`)."""

    def __init__(self, cfg: EvalConfig, seed: int, budget_reached: Callable[[], bool]) -> None:
        self.cfg, self.seed = cfg, seed + EVAL_SEED_OFFSET
        self.budget_reached = budget_reached  # the final evaluation happens only when the run finished its budget
        self._bucket = 0
        self.last: dict[str, Any] | None = None

    @abc.abstractmethod
    def run(self, trainer: L.Trainer, pl_module: Any) -> None:
        """One evaluation (rank 0 decides what to log): Evaluation's env episodes, PromptEvaluation's prompts."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        every = self.cfg.every
        self._bucket = data_source(trainer).clock // every if every else 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        source, every = data_source(trainer), self.cfg.every
        if every and source.at_boundary and source.clock // every > self._bucket:
            self._bucket = source.clock // every
            self.run(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.cfg.final and self.budget_reached():
            self.run(trainer, pl_module)


class Evaluation(PeriodicEvaluation):
    def __init__(self, env_cfg: EnvConfig, cfg: EvalConfig, seed: int, budget_reached: Callable[[], bool]) -> None:
        super().__init__(cfg, seed, budget_reached)
        self.env_cfg = env_cfg
        self.videos = EvalVideos(env_cfg, self.seed) if cfg.video else None

    def run(self, trainer: L.Trainer, pl_module: Any) -> None:
        if not trainer.is_global_zero:
            return
        source = data_source(trainer)
        policy = Policy(pl_module, source.observation_stats(), self.env_cfg.clip_obs, self.cfg.deterministic)
        clock = source.clock
        if self.last is not None and self.last["clock"] == clock:
            return  # the final evaluation fell on a periodic one
        self.last = {**evaluate(policy, self.env_cfg, self.cfg.episodes, self.seed), "clock": clock}
        if self.videos is not None:  # the first evaluation episode again (same seed), rendered
            self.videos.record(policy, clock, trainer.loggers)
        pl_module.train()
        metrics = {"eval/return_mean": self.last["return_mean"], "eval/return_std": self.last["return_std"]}
        if "success_rate" in self.last:  # goal envs that report success (info["success"] / info["is_success"])
            metrics["eval/success_rate"] = self.last["success_rate"]
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=clock)
        if sys.stderr.isatty():  # a live progress line ends in a carriage return: clear it first
            sys.stderr.write("\r\033[K")
        log.info("%s", self.line(self.last, source.clock_unit))

    @staticmethod
    def line(result: dict[str, Any], unit: str) -> str:
        text = (f"eval @ {result['clock']:,} {unit}: return {result['return_mean']:.1f} ± {result['return_std']:.1f} "
                f"({result['episodes']} episodes)")
        if "success_rate" in result:
            text += f", success rate {result['success_rate']:.2f}"
        return text
