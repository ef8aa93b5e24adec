"""Network bodies and policy heads shared by all algorithms."""

from lrl.networks.ensemble import EnsembleLinear, EnsembleMLP
from lrl.networks.heads import (
    CategoricalHead,
    GaussianHead,
    PolicyHead,
    StochasticPolicy,
    TanhGaussianHead,
    make_policy_head,
)
from lrl.networks.mlp import ActorCritic, mlp
from lrl.networks.policy import PolicyNet, SamplingPolicy, value_net
from lrl.networks.q import EpsilonGreedy

__all__ = [
    "ActorCritic", "CategoricalHead", "EnsembleLinear", "EnsembleMLP", "EpsilonGreedy", "GaussianHead", "PolicyHead",
    "PolicyNet", "SamplingPolicy", "StochasticPolicy", "TanhGaussianHead", "make_policy_head", "mlp", "value_net",
]
