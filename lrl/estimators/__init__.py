"""Return and advantage estimators, and the loss forms several algorithms share (pure functions on tensors)."""

from lrl.estimators.advantages import (
    annotate_gae,
    discounted_returns,
    explained_variance,
    gae,
    normalize_advantage,
    td_error,
)
from lrl.estimators.baselines import average_baseline, optimal_baseline, trajectory_scores
from lrl.estimators.importance import (
    clip_log_weights,
    effective_sample_size,
    importance_weights,
    log_importance_weights,
)
from lrl.estimators.losses import (
    deterministic_actor_loss,
    masked_value_loss,
    policy_gradient_loss,
    q_regression_loss,
    surrogate,
    td_loss,
    value_loss,
)
from lrl.estimators.monte_carlo import (
    Baseline,
    Returns,
    all_sum,
    annotate_returns,
    global_counts,
    masked_moments,
    monte_carlo_returns,
)
from lrl.estimators.returns import (
    Discounting,
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
    "Baseline", "Discounting", "Returns", "all_sum", "annotate_gae", "annotate_returns", "average_baseline",
    "clip_log_weights", "deterministic_actor_loss", "discounted_returns", "effective_sample_size", "episode_cumsum",
    "episode_index", "episode_return", "episode_starts", "episode_sum", "episode_timestep", "explained_variance", "gae",
    "global_counts", "importance_weights", "log_importance_weights", "masked_moments", "masked_value_loss",
    "monte_carlo_returns", "normalize_advantage", "optimal_baseline", "policy_gradient_loss", "q_regression_loss",
    "reward_to_go", "surrogate", "td_error", "td_loss", "td_target", "trajectory_scores", "value_loss",
]
