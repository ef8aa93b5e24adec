"""Early stopping of a sweep trial (``lrl sweep``): each evaluation's ``eval/return_mean`` is reported to the Optuna
trial at its clock (frames, gradient steps, ...), and the run stops at that boundary when the trial's pruner says
so. It reads the :class:`~lrl.callbacks.Evaluation` callback's result, so it must come after it in the callback list
(:func:`lrl.launch.run` puts extra callbacks last)."""

from __future__ import annotations

from typing import Any

import lightning as L

from lrl.callbacks.evaluation import Evaluation


class TrialPruning(L.Callback):
    def __init__(self, trial: Any, budget: int) -> None:
        self.trial, self.budget = trial, budget  # an optuna.Trial; the budget in the recipe's clock unit
        self.reported: int | None = None  # clock of the last evaluation reported
        self.pruned_at: int | None = None  # clock where the pruner stopped the run; None: not pruned

    def _report(self, trainer: L.Trainer) -> int | None:
        """Report the evaluation that ran since the last call, if any; its clock."""
        callbacks: list[L.Callback] = getattr(trainer, "callbacks", [])  # set by the Trainer; not in its stubs
        evaluation = next((cb for cb in callbacks if isinstance(cb, Evaluation)), None)
        last = evaluation.last if evaluation is not None else None
        if last is None or last["clock"] == self.reported:
            return None
        self.reported = int(last["clock"])
        self.trial.report(float(last["return_mean"]), step=self.reported)
        return self.reported

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        clock = self._report(trainer)
        # at the budget the run is complete: the final evaluation is the trial's value, nothing left to save
        if clock is not None and clock < self.budget and self.trial.should_prune():
            self.pruned_at = clock
            trainer.should_stop = True

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.pruned_at is None:
            self._report(trainer)  # the final evaluation (Evaluation.on_train_end ran before this)
