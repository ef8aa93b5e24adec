"""PPO's losses as pure functions of explicit tensors (Rossi ch. 8, Brunskill, Fragkiadaki).

Conventions: losses are minimised, so the clipped surrogate enters with a minus sign.
"""

from __future__ import annotations

import torch

from lrl.estimators.losses import value_loss


def clipped_surrogate(logp: torch.Tensor, old_logp: torch.Tensor, advantage: torch.Tensor,
                      clip_range: float) -> tuple[torch.Tensor, torch.Tensor]:
    """L^CLIP = E[min(r Â, clip(r, 1−ε, 1+ε) Â)], r = exp(logp − logp_old) (Rossi eq. 8.1–8.2).

    Returns (the surrogate to maximise, the fraction of samples whose ratio was clipped).
    """
    ratio = torch.exp(logp - old_logp.detach())
    unclipped = ratio * advantage
    clipped = ratio.clamp(1.0 - clip_range, 1.0 + clip_range) * advantage
    clip_fraction = ((ratio - 1.0).abs() > clip_range).float().mean()
    return torch.minimum(unclipped, clipped).mean(), clip_fraction


def approx_kl(logp: torch.Tensor, old_logp: torch.Tensor) -> torch.Tensor:
    """KL̂(old‖new) = mean(log π_old(a|s) − log π_new(a|s)) on the taken actions (Rossi eq. 8.3)."""
    return (old_logp - logp).mean()


def ppo_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantage: torch.Tensor, entropy: torch.Tensor,
             value: torch.Tensor, value_target: torch.Tensor, old_value: torch.Tensor, *,
             clip_range: float, clip_range_vf: float | None, vf_coef: float, ent_coef: float
             ) -> dict[str, torch.Tensor]:
    """Total loss = −L^CLIP + c_v·L^V − c_e·H, plus the diagnostics PPO users read."""
    surrogate, clip_fraction = clipped_surrogate(logp, old_logp, advantage, clip_range)
    v_loss = value_loss(value, value_target, old_value, clip_range_vf)
    ent = entropy.mean()
    total = -surrogate + vf_coef * v_loss - ent_coef * ent
    return {"loss": total, "policy": -surrogate, "value": v_loss, "entropy": ent,
            "approx_kl": approx_kl(logp, old_logp).detach(), "clip_fraction": clip_fraction}
