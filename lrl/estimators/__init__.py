"""Return and advantage estimators shared by all algorithms (pure functions on tensors)."""

from lrl.estimators.advantages import annotate_gae, discounted_returns, explained_variance, gae, td_error
from lrl.estimators.baselines import average_baseline, optimal_baseline, trajectory_scores
from lrl.estimators.importance import (
    clip_log_weights,
    effective_sample_size,
    importance_weights,
    log_importance_weights,
)
from lrl.estimators.returns import (
    episode_cumsum,
    episode_index,
    episode_return,
    episode_starts,
    episode_sum,
    episode_timestep,
    reward_to_go,
)
from lrl.estimators.targets import td_target

__all__ = [
    "annotate_gae", "average_baseline", "clip_log_weights", "discounted_returns", "effective_sample_size",
    "episode_cumsum", "episode_index", "episode_return", "episode_starts", "episode_sum", "episode_timestep",
    "explained_variance", "gae", "importance_weights", "log_importance_weights", "optimal_baseline", "reward_to_go",
    "td_error", "td_target", "trajectory_scores",
]
