"""Deep Q-learning losses as pure functions of explicit tensors (Rossi ch. 2).

One target covers the three variants, by which network selects the next action and which evaluates it:

    y = r + γ (1 − terminated) · Q_eval(s', argmax_a' Q_select(s', a'))

* DQN (Alg. 2.2/2.3): select = eval = the target network (max over its values).
* Double DQN (van Hasselt et al. 2016, cited in §2.8): select = the online network, eval = the target network.
* Double Q-learning as the seed writes it (Alg. 2.5/2.6): two networks; updating network i, select with network
  i (its target copy under Alg. 2.6) and evaluate with the other one.

The Huber or squared TD loss, shared with SARSA, is :func:`lrl.estimators.losses.td_loss`.
"""

from __future__ import annotations

import torch

from lrl.estimators.targets import td_target


def q_target(reward: torch.Tensor, terminated: torch.Tensor, next_q_select: torch.Tensor, next_q_eval: torch.Tensor,
             gamma: float) -> torch.Tensor:
    """y = r + γ (1 − terminated) Q_eval(s', argmax Q_select(s', ·)); next_q_* are [B, |A|]."""
    best = next_q_select.argmax(-1, keepdim=True)
    return td_target(reward, next_q_eval.gather(-1, best).squeeze(-1), terminated, gamma)
