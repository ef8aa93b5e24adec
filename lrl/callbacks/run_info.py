"""Run information in every checkpoint (recipe, env spec, MLflow run) and the cross-rank parameter check."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.distributed as dist

from lrl.contract import data_source
from lrl.spec import Spec

log = logging.getLogger(__name__)


def param_digest(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    state = dict(module.state_dict())
    reward_learner = getattr(module, "reward_learner", None)  # rlhf: the reward model must agree across ranks too
    if reward_learner is not None:
        state.update({f"rlhf.{k}": v for k, v in reward_learner.model.net.state_dict().items()})
    for name, p in sorted(state.items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class RunInfo(L.Callback):
    def __init__(self, recipe: dict[str, Any], spec: Spec, run_dir: Path, tracking_uri: str | None) -> None:
        self.recipe, self.spec, self.run_dir, self.tracking_uri = recipe, spec, run_dir, tracking_uri

    def run_id(self, trainer: L.Trainer) -> str | None:
        for logger in trainer.loggers:
            run_id = getattr(logger, "run_id", None)
            if run_id:
                return str(run_id)
        return None

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint["lrl"] = {
            "format": 2,  # 2: "spec", "clock", "clock_unit" (Contract v2)
            "recipe": self.recipe,
            "spec": self.spec.to_dict(),
            "clock": data_source(trainer).clock,
            "clock_unit": data_source(trainer).clock_unit,
            "mlflow_run_id": self.run_id(trainer) if trainer.is_global_zero else None,
            "tracking_uri": self.tracking_uri,
        }

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from lrl.lm.sharding import sharded

        if trainer.world_size < 2 or not dist.is_initialized() or sharded(pl_module):
            return  # (sharded parameters differ across ranks by design)
        digests: list[Any] = [None] * trainer.world_size
        dist.all_gather_object(digests, param_digest(pl_module))
        if trainer.is_global_zero:
            (self.run_dir / "ddp_params.json").write_text(json.dumps({"sha256_per_rank": digests}, indent=1))
            if len(set(digests)) > 1:
                log.error("parameters differ across ranks after training: %s", digests)
