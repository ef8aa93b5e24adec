"""A2C's loss as pure functions of explicit tensors (Rossi §3.5–3.6, eq. 3.29–3.33; Fragkiadaki "Actor-critic").

Conventions: losses are minimised, so the policy-gradient surrogate enters with a minus sign. The critic's squared
error and the advantage standardisation are PPO's (one definition in the code base, in :mod:`lrl.estimators`).
"""

from __future__ import annotations

import torch

from lrl.estimators.losses import value_loss


def policy_gradient_loss(logp: torch.Tensor, advantage: torch.Tensor) -> torch.Tensor:
    """−mean_t[log π_θ(a_t|s_t) · Φ_t] with Φ_t = Â_t held constant (Rossi eq. 3.29, Φ from eq. 3.30–3.33).

    Its gradient is minus the policy-gradient estimate ĝ of Rossi Alg. 3.3, averaged over the samples of the
    batch (the estimator's 1/|D| Σ_τ Σ_t up to a constant factor that the step size absorbs, as in Fragkiadaki's
    (1/N) Σ_i Σ_t). The advantage is detached: no gradient flows through the critic into the actor.
    """
    return -(logp * advantage.detach()).mean()


def a2c_loss(logp: torch.Tensor, advantage: torch.Tensor, entropy: torch.Tensor, value: torch.Tensor,
             value_target: torch.Tensor, *, vf_coef: float, ent_coef: float) -> dict[str, torch.Tensor]:
    """Total loss = −mean(log π · Â) + c_v · mean((V_ψ(s) − y)²) − c_e · mean(H[π(·|s)]).

    The critic term is Rossi eq. 3.31, L = (y − V_ψ(s))², with the target ``y`` detached (semi-gradient:
    "the value of the next state will be considered as a constant"). ``vf_coef`` and the entropy bonus are
    [NOT IN SEEDS]: the seeds train actor and critic with separate step sizes η and ω and give
    no entropy term; with one optimiser over both networks ``vf_coef`` plays the role of ω/η.
    """
    policy = policy_gradient_loss(logp, advantage)
    v_loss = value_loss(value, value_target.detach())
    ent = entropy.mean()
    total = policy + vf_coef * v_loss - ent_coef * ent
    return {"loss": total, "policy": policy, "value": v_loss, "entropy": ent.detach()}
