"""Soft Actor-Critic losses as pure functions of explicit tensors (Rossi ch. 11, Alg. 11.1; Haarnoja et al.
2018B). Q-values of the n critics come stacked as ``[n, B]``; log-probabilities, rewards and flags as ``[B]``.

* Critic target (eq. 11.5, with two typos of the source corrected: the entropy term enters with a minus sign
  inside the discount, and the min is over *both target* critics):

      y = r + γ (1 − terminated) (min_i Q'_i(s', a') − α log π(a'|s')),   a' ~ π(·|s') freshly sampled

  A truncated transition bootstraps like any other; only a termination zeroes the bootstrap.
* Critic loss: ½ Σ_i mean_B (Q_i(s, a) − y)². Its gradient is Alg. 11.1's ĥ_i = (1/M) Σ (y − Q_i) ∇Q_i (the ½
  cancels the square's 2) and it equals SB3's ``0.5 * sum(mse)``; TorchRL's ``SACLoss`` (``loss_function="l2"``)
  reports twice this value.
* Actor loss (eq. 11.7, Alg. 11.1): mean(α log π(ã|s) − min_i Q_i(s, ã)), ã reparameterised (eq. 11.8). The
  caller evaluates the Q_i(s, ã) with the critic parameters detached, so this loss moves the actor only.
* Temperature loss: −mean(log α · sg(log π(ã|s) + H̄)) with the target entropy H̄ (−|A| by default). NOT IN SEEDS:
  Rossi only mentions that Haarnoja et al. 2018B adapt the temperature (§11.3); this is the form of SB3 and
  TorchRL (gradient on log α, as in the softlearning reference code). Its gradient −mean(log π + H̄) is positive,
  so a descent step lowers α, when the policy's entropy −E[log π] exceeds H̄, and raises α when it falls below.
"""

from __future__ import annotations

import torch

from lrl.estimators.targets import td_target


def soft_q_target(reward: torch.Tensor, terminated: torch.Tensor, next_q: torch.Tensor, next_log_prob: torch.Tensor,
                  alpha: torch.Tensor | float, gamma: float) -> torch.Tensor:
    """y = r + γ (1 − terminated)(min_i Q'_i(s', a') − α log π(a'|s')); ``next_q`` is [n, B] from the target critics."""
    soft_value = next_q.float().min(0).values - alpha * next_log_prob.float()
    return td_target(reward, soft_value, terminated, gamma)


def critic_loss(q: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """½ Σ_i mean (Q_i(s, a) − y)² over the n critics; ``q`` is [n, B], ``target`` [B] without gradients."""
    return 0.5 * (q.float() - target).pow(2).mean(-1).sum()


def actor_loss(q_pi: torch.Tensor, log_prob: torch.Tensor, alpha: torch.Tensor | float) -> torch.Tensor:
    """mean(α log π(ã|s) − min_i Q_i(s, ã)); ``q_pi`` is [n, B], α a constant here."""
    return (alpha * log_prob.float() - q_pi.float().min(0).values).mean()


def alpha_loss(log_alpha: torch.Tensor, log_prob: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """−mean(log α · sg(log π + H̄)): descending it raises α while the entropy −E[log π] is below H̄ (NOT IN SEEDS)."""
    return -(log_alpha * (log_prob.detach().float() + target_entropy)).mean()
