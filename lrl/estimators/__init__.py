"""Return and advantage estimators shared by all algorithms (pure functions on tensors)."""

from lrl.estimators.advantages import discounted_returns, gae, td_error
from lrl.estimators.targets import td_target

__all__ = ["discounted_returns", "gae", "td_error", "td_target"]
