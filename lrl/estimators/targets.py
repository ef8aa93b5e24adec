"""Bootstrapped one-step targets for value-based and off-policy actor-critic methods (Rossi ch. 2, 9-11).

    y = r + γ (1 − terminated) · next_value

``next_value`` is the value of the true next observation (the final observation when the episode ended). Only a
real termination zeroes the bootstrap; a time-limit truncation bootstraps like any other step.
Targets are constants of the update (semi-gradient, Rossi §2.1): callers compute them under ``no_grad``.
"""

from __future__ import annotations

import torch


def td_target(reward: torch.Tensor, next_value: torch.Tensor, terminated: torch.Tensor, gamma: float) -> torch.Tensor:
    """y = r + γ (1 − terminated) V' (all tensors of the same shape, float32 out)."""
    return reward.float() + gamma * (~terminated).float() * next_value.float()
