"""Network bodies and policy heads shared by all algorithms."""

from lrl.networks.heads import CategoricalHead, GaussianHead, PolicyHead, make_policy_head
from lrl.networks.mlp import ActorCritic, mlp
from lrl.networks.policy import PolicyNet, SamplingPolicy, value_net

__all__ = ["ActorCritic", "CategoricalHead", "GaussianHead", "PolicyHead", "PolicyNet", "SamplingPolicy",
           "make_policy_head", "mlp", "value_net"]
