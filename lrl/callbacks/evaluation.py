"""Evaluation of the deterministic policy every N frames on separate envs (rank 0 only)."""

from __future__ import annotations

from typing import Any

import lightning as L

from lrl.evaluate import Policy, evaluate
from lrl.recipe.schema import EnvConfig, EvalConfig

EVAL_SEED_OFFSET = 1_000_000  # evaluation envs never share seeds with training envs


class Evaluation(L.Callback):
    def __init__(self, env_cfg: EnvConfig, cfg: EvalConfig, seed: int) -> None:
        self.env_cfg, self.cfg, self.seed = env_cfg, cfg, seed + EVAL_SEED_OFFSET
        self._bucket = 0
        self.last: dict[str, Any] | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        every = self.cfg.every_frames
        self._bucket = trainer.datamodule.frames // every if every else 0  # type: ignore[attr-defined]

    def run(self, trainer: L.Trainer, pl_module: Any) -> None:
        if not trainer.is_global_zero:
            return
        norm = trainer.datamodule.collector.obs_normalizer  # type: ignore[attr-defined]
        stats = None if norm is None else {"mean": norm.current.mean, "var": norm.current.var}
        policy = Policy(pl_module, stats, self.env_cfg.clip_obs, self.cfg.deterministic)
        frames = trainer.datamodule.frames  # type: ignore[attr-defined]
        if self.last is not None and self.last["frames"] == frames:
            return  # the final evaluation fell on a periodic one
        self.last = {**evaluate(policy, self.env_cfg, self.cfg.episodes, self.seed), "frames": frames}
        pl_module.train()
        metrics = {"eval/return_mean": self.last["return_mean"], "eval/return_std": self.last["return_std"]}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=frames)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        dm, every = trainer.datamodule, self.cfg.every_frames  # type: ignore[attr-defined]
        if every and dm.at_boundary and dm.frames // every > self._bucket:
            self._bucket = dm.frames // every
            self.run(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        ckpt = next((c for c in trainer.callbacks if hasattr(c, "reached_budget")), None)  # type: ignore[attr-defined]
        if self.cfg.final and ckpt is not None and ckpt.reached_budget:
            self.run(trainer, pl_module)
