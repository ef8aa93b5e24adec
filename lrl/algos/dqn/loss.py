"""Deep Q-learning losses as pure functions of explicit tensors (seed 004 ch. 2).

One target covers the three variants, by which network selects the next action and which evaluates it:

    y = r + γ (1 − terminated) · Q_eval(s', argmax_a' Q_select(s', a'))

* DQN (Alg. 2.2/2.3): select = eval = the target network (max over its values).
* Double DQN (van Hasselt et al. 2016, cited in §2.8): select = the online network, eval = the target network.
* Double Q-learning as the seed writes it (Alg. 2.5/2.6): two networks; updating network i, select with network
  i (its target copy under Alg. 2.6) and evaluate with the other one.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from lrl.estimators.targets import td_target


def q_target(reward: torch.Tensor, terminated: torch.Tensor, next_q_select: torch.Tensor, next_q_eval: torch.Tensor,
             gamma: float) -> torch.Tensor:
    """y = r + γ (1 − terminated) Q_eval(s', argmax Q_select(s', ·)); next_q_* are [B, |A|]."""
    best = next_q_select.argmax(-1, keepdim=True)
    return td_target(reward, next_q_eval.gather(-1, best).squeeze(-1), terminated, gamma)


def td_loss(q_taken: torch.Tensor, target: torch.Tensor, kind: Literal["huber", "mse"] = "huber") -> torch.Tensor:
    """Mean Huber (δ = 1, as SB3 and the DQN paper's error clipping) or squared error between Q(s, a) and y.

    The seed's loss is the squared error (eq. 2.5); its gradient −2(y − Q)∇Q has the factor 2 that the step size
    absorbs. ``target`` must not carry gradients (semi-gradient TD, seed 004 §2.1).
    """
    q_taken = q_taken.float()
    if kind == "huber":
        return F.smooth_l1_loss(q_taken, target)
    return (q_taken - target).pow(2).mean()
