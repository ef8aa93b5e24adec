"""TD3's targets as pure functions of explicit tensors (Rossi ch. 10, Alg. 10.1; Fujimoto et al. 2018).

    target action   a' = clip(μ_θ'(s') + clip(ε, −c, c), low, high),   ε ~ N(0, σ̃²)      (eq. 10.1)
    critic target   y  = r + γ (1 − terminated) · min(Q_ψ1'(s', a'), Q_ψ2'(s', a'))

Alg. 10.1 prints min(Q_ψ1, Q_ψ2'); the text (§10.2) and every implementation use both *target* critics, which is
what is computed here. Clipping a' to the action bounds is not in the seed (eq. 10.1 clips only
the noise) but is in the paper's reference code; it keeps the critics queried inside the box they are trained on.
The critic loss and the actor loss are DDPG's (:func:`lrl.estimators.losses.q_regression_loss`,
:func:`lrl.estimators.losses.deterministic_actor_loss`), the actor through Q_ψ1 only.
"""

from __future__ import annotations

import torch

from lrl.estimators.targets import td_target


def smoothed_target_action(target_action: torch.Tensor, noise: torch.Tensor, noise_clip: torch.Tensor | float,
                           low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Target policy smoothing: clip(μ'(s') + clip(noise, −c, c), low, high).

    ``noise`` is already scaled (σ̃ ε); ``noise_clip`` c in the same units (a tensor per action dimension or a
    float).
    """
    c = torch.as_tensor(noise_clip, dtype=noise.dtype, device=noise.device)
    clipped = torch.maximum(torch.minimum(noise, c), -c)
    return torch.maximum(torch.minimum(target_action + clipped, high), low)


def twin_critic_target(reward: torch.Tensor, terminated: torch.Tensor, next_q: torch.Tensor,
                       gamma: float) -> torch.Tensor:
    """y = r + γ (1 − terminated) min_i Q_ψi'(s', a'); ``next_q`` is ``[n, B]`` (clipped double-Q learning)."""
    return td_target(reward, next_q.float().min(0).values, terminated, gamma)
