"""REINFORCE's own loss form (Yin §4.3.2): the linear surrogate that applies the optimal-baseline gradient.

The Monte-Carlo policy-gradient loss and the value fit it shares with ``offpg`` (off-policy PG is the same surrogate
with importance-weighted Φ) are :func:`lrl.estimators.losses.policy_gradient_loss` and
:func:`lrl.estimators.losses.masked_value_loss`; returns and baselines are :mod:`lrl.estimators.monte_carlo`.
"""

from __future__ import annotations

import torch


def linear_surrogate(params: list[torch.Tensor], grads: list[torch.Tensor]) -> torch.Tensor:
    """−Σ_p ⟨p, sg(ĝ_p)⟩: a loss whose gradient is exactly −ĝ.

    It applies a gradient computed outside a single autograd pass (the optimal-baseline estimate, which needs
    per-trajectory gradients first) through the ordinary backward, so DDP's gradient averaging, gradient
    clipping and precision plugins handle it like any other loss.
    """
    return -sum((p * g.detach().to(p.dtype)).sum() for p, g in zip(params, grads, strict=True))  # type: ignore[return-value]
