"""RLHF-PPO's per-token estimators and losses as pure functions of explicit tensors (Rossi ch. 15, eq. 15.8-15.11
and §15.2.8-15.2.9; Ziegler et al. 2019; Stiennon et al. 2020; Ouyang et al. 2022; GRPO: Shao et al. 2024).

Layout: a rollout of B sequences, each a (left-padded) prompt followed by R response columns. Per-token tensors are
``[B, R]``: column t is the action a_t = w_{n+t}, taken in the state s_t = prompt + response[:t]. ``mask[b, t]`` is
True for the generated tokens up to and including the first end-of-sequence token; the columns after it are padding
and get nothing (no reward, no KL, no loss).

KL direction (Rossi §15.2.5: log(π^RL/π^SFT)): the penalty is the log-ratio log π^RL(a_t|s_t) − log π^SFT(a_t|s_t)
at the sampled token, a one-sample estimate of KL(π^RL ‖ π^SFT) (new ‖ reference). Rossi eq. 15.7/15.8 omit β (β = 1);
here β multiplies every KL term. γ = 1 throughout (Rossi §15.2.6), so Rossi's absolute and relative discount
exponents (γ^k vs γ^(k−t)) agree.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist

from lrl.algos.ppo.loss import clipped_surrogate, ppo_loss
from lrl.estimators import gae
from lrl.estimators.tokens import last_index, response_mask, token_entropy, token_logprobs

__all__ = [
    "AllReduce",
    "adaptive_kl_coef",
    "group_advantages",
    "grpo_loss",
    "kl_k3",
    "last_index",
    "per_token_rewards",
    "ptx_logprob",
    "response_mask",
    "reward_to_go",
    "rlhf_ppo_loss",
    "token_entropy",
    "token_gae",
    "token_logprobs",
    "whiten",
]


def per_token_rewards(score: torch.Tensor, logratio: torch.Tensor, mask: torch.Tensor,
                      beta: float | torch.Tensor) -> torch.Tensor:
    """r_k = −β·log(π^RL/π^SFT)_k at every generated token, plus the reward model's r̂(x, y) at the last generated
    token only (Rossi eq. 15.8-15.9): ``score`` ``[B]``, ``logratio`` and ``mask`` ``[B, R]``; padding gets 0."""
    m = mask.to(logratio.dtype)
    rewards = -beta * logratio * m
    rows = torch.arange(score.shape[0], device=score.device)
    rewards[rows, last_index(mask)] += score.to(rewards.dtype)
    return rewards


def reward_to_go(rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """γ = 1 reward-to-go G_t = Σ_{k≥t} r_k over the generated tokens (Rossi eq. 15.10-15.11): with
    :func:`per_token_rewards`, G_t = r̂ − β Σ_{k≥t} log-ratio_k. Padding gets 0."""
    r = rewards * mask.to(rewards.dtype)
    return r.flip(-1).cumsum(-1).flip(-1) * mask.to(rewards.dtype)


def token_gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, lam: float,
              gamma: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE(γ, λ) over the generated tokens with a value head V(s_t) (lrl's :func:`lrl.estimators.gae`): the episode
    ends after the last generated token (V = 0 beyond it). Returns (advantages, value targets = advantages + V),
    both 0 on padding. λ = 1 and γ = 1 give G_t − V(s_t) (:func:`reward_to_go`)."""
    m = mask.bool()
    nxt = torch.zeros_like(m)
    nxt[:, :-1] = m[:, 1:]
    end = ~nxt  # the step after t is not a generated token: the episode ends at t
    next_value = torch.zeros_like(values, dtype=torch.float32)
    next_value[:, :-1] = values[:, 1:].float()
    adv = gae(rewards * m, values.float(), next_value, end, end, gamma, lam) * m
    return adv, (adv + values.float()) * m


AllReduce = Callable[[torch.Tensor], torch.Tensor]


def _all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t)
    return t


def whiten(x: torch.Tensor, mask: torch.Tensor | None = None, shift_mean: bool = True, eps: float = 1e-8,
           all_reduce: AllReduce = _all_reduce_sum) -> torch.Tensor:
    """(x − mean) / std over the whole batch on *all* ranks together (Rossi §15.2.9: the reward is batch-normalised
    to N(0, 1)); mean and (population) variance from one all-reduce of (Σx, Σx², n). ``mask`` picks the entries
    that count; ``shift_mean=False`` only rescales. Same result on every rank."""
    m = torch.ones_like(x, dtype=torch.bool) if mask is None else mask.bool()
    xf = x.float()
    stats = torch.stack([(xf * m).sum(), (xf.pow(2) * m).sum(), m.float().sum()])
    stats = all_reduce(stats)
    n = stats[2].clamp_min(1.0)
    mean = stats[0] / n
    var = (stats[1] / n - mean.pow(2)).clamp_min(0.0)
    out = ((xf - mean) if shift_mean else xf) * torch.rsqrt(var + eps)
    return out * m


def adaptive_kl_coef(beta: float, kl: float, target: float, n_steps: int, horizon: int) -> float:
    """Ziegler et al. 2019 (§2.2): β ← β·(1 + K_β e), e = clip(KL / KL_target − 1, −0.2, 0.2), with
    K_β = n_steps / horizon as in their code (n_steps: sequences in the batch). KL is the batch mean of each
    sequence's summed log-ratio."""
    error = min(max(kl / target - 1.0, -0.2), 0.2)
    return beta * (1.0 + error * n_steps / horizon)


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """The non-negative per-token KL(π ‖ π_ref) estimate exp(Δ) − Δ − 1, Δ = log π_ref − log π (Schulman's k3),
    GRPO's penalty (Shao et al. 2024, eq. 4; TorchRL ``GRPOLoss`` ``kl_to_ref``)."""
    diff = ref_logp - logp
    return diff.exp() - diff - 1.0


def group_advantages(score: torch.Tensor, group: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """GRPO's outcome advantage (Shao et al. 2024, §4.1.2): Â_i = (r_i − mean(r_group)) / std(r_group) over the K
    responses sampled for the same prompt (``group`` ids), with the unbiased std clamped at ``eps`` as TorchRL's
    ``MCAdvantage``. Rossi names GRPO only (§7 item 18); this follows Shao et al."""
    ids, inv = torch.unique(group, return_inverse=True)
    n = torch.zeros(len(ids), device=score.device).index_add_(0, inv, torch.ones_like(score, dtype=torch.float32))
    s = score.float()
    mean = torch.zeros_like(n).index_add_(0, inv, s) / n
    sq = torch.zeros_like(n).index_add_(0, inv, (s - mean[inv]).pow(2))
    std = (sq / (n - 1).clamp_min(1.0)).sqrt()
    return (s - mean[inv]) / std[inv].clamp_min(eps)


def ptx_logprob(logits: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """mean log π(z) over the predicted (non-padding) tokens of a pretraining batch: next-token log-likelihood of
    z_1.. given z_0.. at temperature 1 (the language model itself)."""
    logp = token_logprobs(logits[:, :-1], input_ids[:, 1:])
    m = attention_mask[:, 1:].bool() & attention_mask[:, :-1].bool()
    return (logp * m).sum() / m.sum().clamp_min(1)


def rlhf_ppo_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantage: torch.Tensor, entropy: torch.Tensor,
                  value: torch.Tensor, value_target: torch.Tensor, old_value: torch.Tensor, mask: torch.Tensor, *,
                  clip_range: float, clip_range_vf: float | None, vf_coef: float, ent_coef: float,
                  ptx_logp: torch.Tensor | None = None, ptx_coef: float = 0.0) -> dict[str, torch.Tensor]:
    """lrl's PPO loss (:func:`lrl.algos.ppo.loss.ppo_loss`: clipped surrogate, value loss, entropy) as a mean over
    the generated tokens, minus the PPO-ptx term λ·mean log π(z) on a pretraining batch (Rossi §15.2.8, Ouyang et al.
    2022 eq. 2): its gradient is the PPO gradient plus λ∇ mean log π(z)."""
    m = mask.bool()
    out = ppo_loss(logp[m], old_logp[m], advantage[m], entropy[m], value[m], value_target[m], old_value[m],
                   clip_range=clip_range, clip_range_vf=clip_range_vf, vf_coef=vf_coef, ent_coef=ent_coef)
    if ptx_logp is not None:
        out["ptx"] = -ptx_logp
        out["loss"] = out["loss"] - ptx_coef * ptx_logp
    return out


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor, advantage: torch.Tensor,
              entropy: torch.Tensor, mask: torch.Tensor, *, clip_range: float, beta: float | torch.Tensor,
              ent_coef: float, ptx_logp: torch.Tensor | None = None, ptx_coef: float = 0.0
              ) -> dict[str, torch.Tensor]:
    """GRPO (Shao et al. 2024, eq. 3): −E_tokens[min(r Â, clip(r, 1−ε, 1+ε) Â)] + β·E_tokens[k3 KL to the reference]
    − c_e·H, token means over the generated tokens (TorchRL ``GRPOLoss`` with ``aggregation="token_mean"`` and
    ``kl_to_ref_coeff=β``), no value function; the KL is in the loss, not in the reward. Optional PPO-ptx term."""
    m = mask.bool()
    surrogate, clip_fraction = clipped_surrogate(logp[m], old_logp[m], advantage[m], clip_range)
    kl = kl_k3(logp[m], ref_logp[m].detach()).mean()
    ent = entropy[m].mean()
    out = {"loss": -surrogate + beta * kl - ent_coef * ent, "policy": -surrogate, "kl_to_ref": kl.detach(),
           "entropy": ent, "approx_kl": (old_logp[m] - logp[m]).mean().detach(), "clip_fraction": clip_fraction}
    if ptx_logp is not None:
        out["ptx"] = -ptx_logp
        out["loss"] = out["loss"] - ptx_coef * ptx_logp
    return out
