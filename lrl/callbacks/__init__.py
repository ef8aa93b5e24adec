"""Clock-driven callbacks: budget, checkpoints + signals, evaluation, progress, run info."""

from lrl.callbacks.checkpoint import ClockCheckpoint
from lrl.callbacks.evaluation import Evaluation
from lrl.callbacks.progress import ClockProgress
from lrl.callbacks.run_info import RunInfo

__all__ = ["ClockCheckpoint", "ClockProgress", "Evaluation", "RunInfo"]
