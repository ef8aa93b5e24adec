"""Behavioural cloning's losses (Rossi §13.1, §13.3, eq. 13.1–13.5; Yin §2.1), as pure functions of tensors.

BC is supervised learning of the expert's action a* from the state: X = state, Y = expert action (Rossi §13.1).

- Discrete actions, a softmax policy: the cross-entropy −(1/N) Σ_i log π_θ(a*_i|s_i), whose gradient is eq. 13.1,
  ∇J_IL = −(1/N) Σ ∇log π_θ(a*|s): the policy gradient of eq. 13.2 with Φ ≡ 1, with the sign flipped because BC
  descends a loss while RL ascends a return.
- Continuous actions, a Gaussian policy: the squared error between the network's mean and the expert action,
  (1/N) Σ_i ‖μ_θ(s_i) − a*_i‖² (eq. 13.5), summed over action dimensions. For a Gaussian with a fixed σ,
  log π_θ(a|s) = −‖μ_θ(s) − a‖² / (2σ²) + const, so the policy gradient with Φ ≡ 1 is −1/(2σ²) times this loss's
  gradient (eq. 13.3–13.4; Rossi prints the denominator as 2πσ², a typo: the Gaussian exponent is 2σ²). Summing
  over dimensions keeps that identity for any number of them (``F.mse_loss`` averages instead: it is this loss
  divided by the action dimension).
- Continuous, ``gaussian_nll``: the same likelihood with the head's learned, state-independent log-std,
  −(1/N) Σ_i log N(a*_i; μ_θ(s_i), σ²), the maximum-likelihood form of eq. 13.5 (U^SL of Fragkiadaki's slides).
  It trains σ as well, which matters when the cloned policy is later fine-tuned by RL and explores with that σ.

Regularisers: an entropy bonus (subtracted) and an explicit L2 penalty Σ‖W‖² on the weight matrices, kept out of the
optimiser (not Adam's weight decay, which Adam rescales per parameter) so it can be logged on its own.
"""

from __future__ import annotations

import math

import torch

LOG_2PI = math.log(2 * math.pi)


def discrete_bc_loss(log_probs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """−(1/N) Σ_i log π_θ(a*_i|s_i) from a softmax policy's log-probabilities ``[N, K]`` and the expert's action
    indices ``[N]``: ``F.cross_entropy`` of the logits (eq. 13.1)."""
    return -log_probs.gather(-1, action.long().unsqueeze(-1)).squeeze(-1).mean()


def mse_bc_loss(mean: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """(1/N) Σ_i ‖μ_θ(s_i) − a*_i‖² over ``[N, D]`` means and expert actions (eq. 13.5, summed over dimensions)."""
    return (mean.float() - action.float()).pow(2).sum(-1).mean()


def gaussian_nll_bc_loss(mean: torch.Tensor, log_std: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """−(1/N) Σ_i log N(a*_i; μ_i, diag σ²) = (1/N) Σ_i Σ_d [(a*_id − μ_id)² / (2σ_d²) + log σ_d + ½ log 2π]."""
    mean, log_std, action = mean.float(), log_std.float(), action.float()
    z = (action - mean) * torch.exp(-log_std)
    return (0.5 * z.pow(2) + log_std + 0.5 * LOG_2PI).sum(-1).mean()


def l2_penalty(weights: list[torch.Tensor]) -> torch.Tensor:
    """Σ_W ‖W‖² over the given weight tensors (the caller picks them: weight matrices, not biases or the log-std)."""
    total = torch.zeros((), device=weights[0].device if weights else None)
    for w in weights:
        total = total + w.float().pow(2).sum()
    return total


def bc_loss(fit: torch.Tensor, entropy: torch.Tensor, l2: torch.Tensor, *, ent_coef: float,
            l2_coef: float) -> torch.Tensor:
    """The minimised total: the imitation loss ``fit``, minus ``ent_coef`` × the mean entropy, plus ``l2_coef`` ×
    the L2 penalty."""
    return fit - ent_coef * entropy + l2_coef * l2
