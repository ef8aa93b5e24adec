"""Lightning's ``MLFlowLogger``, with MLflow's refusals turned into one user-facing line.

MLflow checks names and stores only when the logger first contacts it (an empty ``tracking.experiment``, a name
over its length limit, a store it will not open); Lightning's logger lets the ``MlflowException`` through as a
traceback. Here it becomes an :class:`~lrl.errors.LrlError`, so the CLI prints one line and the launcher removes
the run directory that has no checkpoint yet. Lightning's "Creating it." notice is silenced: when a check fails
after the logger's first contact (an algorithm's setup), stderr must still hold only the error line.
"""

from __future__ import annotations

import logging
from typing import Any

from lightning.pytorch.loggers import MLFlowLogger


def one_line(text: str) -> str:
    return " ".join(str(text).split())


class LrlMLFlowLogger(MLFlowLogger):
    @property
    def experiment(self) -> Any:
        if self._initialized:  # every log_metrics call comes here: after the first contact, no logging levels to juggle
            return super().experiment
        from mlflow.exceptions import MlflowException

        from lrl.errors import LrlError

        quiet = logging.getLogger("lightning.pytorch.loggers.mlflow")
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # "Experiment with name ... not found. Creating it." is not worth a line
        try:
            return super().experiment
        except MlflowException as err:
            raise LrlError(f"MLflow refused the run: {one_line(err.message)} (experiment "
                           f"{self._experiment_name!r}, run name {self._run_name!r})") from None
        finally:
            quiet.setLevel(level)
