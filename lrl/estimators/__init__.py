"""Return and advantage estimators shared by all algorithms (pure functions on tensors)."""

from lrl.estimators.advantages import discounted_returns, gae, td_error

__all__ = ["discounted_returns", "gae", "td_error"]
