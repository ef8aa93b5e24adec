"""Frame-driven callbacks: budget, checkpoints + signals, evaluation, progress, run info."""

from lrl.callbacks.checkpoint import FrameCheckpoint
from lrl.callbacks.evaluation import Evaluation
from lrl.callbacks.progress import FrameProgress
from lrl.callbacks.run_info import RunInfo

__all__ = ["Evaluation", "FrameCheckpoint", "FrameProgress", "RunInfo"]
