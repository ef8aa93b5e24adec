"""Network bodies and policy heads shared by all algorithms."""

from lrl.networks.encoders import ImpalaCNN, NatureCNN, make_encoder
from lrl.networks.ensemble import EnsembleLinear, EnsembleMLP
from lrl.networks.heads import (
    CategoricalHead,
    GaussianHead,
    PolicyHead,
    StochasticPolicy,
    TanhGaussianHead,
    make_policy_head,
)
from lrl.networks.mlp import ActorCritic, body, mlp
from lrl.networks.policy import PolicyNet, SamplingPolicy, value_net
from lrl.networks.q import EpsilonGreedy

__all__ = [
    "ActorCritic", "CategoricalHead", "EnsembleLinear", "EnsembleMLP", "EpsilonGreedy", "GaussianHead", "ImpalaCNN",
    "NatureCNN", "PolicyHead", "PolicyNet", "SamplingPolicy", "StochasticPolicy", "TanhGaussianHead", "body",
    "make_encoder", "make_policy_head", "mlp", "value_net",
]
