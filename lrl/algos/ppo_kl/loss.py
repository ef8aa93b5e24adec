"""KL-penalised policy optimisation as pure functions: the penalised loss and the multiplier updates.

Sources: Atreya §3 (eq. 61–63, Algorithm 2 "Primal–dual update"), Brunskill and Fragkiadaki ("PPO with Adaptive
KL Penalty"), Fragkiadaki TRPO slide ("also worth considering using a penalty instead of a constraint").
Losses are minimised: the objective L(θ') − β·KL enters with a minus sign.
"""

from __future__ import annotations

import torch

from lrl.estimators.losses import surrogate, value_loss


def ppo_kl_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantage: torch.Tensor, kl: torch.Tensor,
                entropy: torch.Tensor, value: torch.Tensor, value_target: torch.Tensor, *,
                kl_coef: torch.Tensor | float, vf_coef: float, ent_coef: float) -> dict[str, torch.Tensor]:
    """loss = −(E[r·Â] − β·E_s[KL]) + c_v·E[(V − V_targ)²] − c_e·H (Brunskill eq. 4, Atreya eq. 63).

    ``kl`` is the closed-form KL per state between the old and the new policy, in the direction the caller
    chose; ``kl_coef`` is β (adaptive) or λ (dual ascent) and carries no gradient. At θ' = θ the KL and its
    gradient vanish, so the loss's policy gradient is the vanilla PG.
    """
    surr = surrogate(logp, old_logp, advantage)
    mean_kl = kl.mean()
    v_loss = value_loss(value, value_target)
    ent = entropy.mean()
    penalty = kl_coef * mean_kl
    total = -(surr - penalty) + vf_coef * v_loss - ent_coef * ent
    return {"loss": total, "policy": -surr, "kl_penalty": penalty.detach(), "kl": mean_kl.detach(), "value": v_loss,
            "entropy": ent.detach()}


def adaptive_kl_coef(coef: float, kl: float, target: float, tolerance: float = 1.5, factor: float = 2.0) -> float:
    """β_{k+1} = β_k·2 if KL ≥ 1.5δ, β_k/2 if KL ≤ δ/1.5, else β_k (Brunskill/Fragkiadaki, "PPO with Adaptive KL
    Penalty")."""
    if kl >= tolerance * target:
        return coef * factor
    if kl <= target / tolerance:
        return coef / factor
    return coef


def dual_ascent_kl_coef(coef: float, kl: float, target: float, lr: float, project: bool = False) -> float:
    """λ ← λ + α(KL − ε) (Atreya Algorithm 2, step 2): gradient ascent on the dual of eq. 63.

    ``project`` clips λ at 0 [NOT IN SEEDS: Atreya turns the constraint into an equality, whose multiplier may
    be negative; for the inequality KL ≤ ε a negative λ would reward moving away, so projecting is standard].
    """
    out = coef + lr * (kl - target)
    return max(out, 0.0) if project else out
