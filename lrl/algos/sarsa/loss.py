"""SARSA and Expected SARSA as pure functions of explicit tensors (Rossi §2.10, eq. 2.9-2.12).

    SARSA (eq. 2.9):           y = r + γ (1 − terminated) · Q(s', a'),          a' ~ π(·|s')
    Expected SARSA (eq. 2.12): y = r + γ (1 − terminated) · Σ_a π(a|s') Q(s', a)

π is the policy being learned: ε-greedy over Q. Its probabilities are ε/|A| for every action plus 1 − ε on the
greedy one (exploring draws uniformly over *all* actions, as DQN's collection policy does). With ε = 0 the
Expected-SARSA target is the Q-learning target r + γ max_a Q(s', a) (§2.10: "When the target policy is the
greedy policy [...] Expected Sarsa coincides with Q-Learning"). The squared (or Huber) TD loss is DQN's
:func:`lrl.estimators.losses.td_loss`; only the bootstrap differs.
"""

from __future__ import annotations

import torch

from lrl.estimators.targets import td_target


def sarsa_target(reward: torch.Tensor, terminated: torch.Tensor, next_q: torch.Tensor, next_action: torch.Tensor,
                 gamma: float) -> torch.Tensor:
    """y = r + γ (1 − terminated) Q(s', a') (eq. 2.9); ``next_q`` is [B, |A|], ``next_action`` [B] (long)."""
    return td_target(reward, next_q.gather(-1, next_action.long().unsqueeze(-1)).squeeze(-1), terminated, gamma)


def expected_sarsa_target(reward: torch.Tensor, terminated: torch.Tensor, next_q: torch.Tensor,
                          next_probs: torch.Tensor, gamma: float) -> torch.Tensor:
    """y = r + γ (1 − terminated) Σ_a π(a|s') Q(s', a) (eq. 2.12); ``next_q`` and ``next_probs`` are [B, |A|]."""
    return td_target(reward, (next_probs.float() * next_q.float()).sum(-1), terminated, gamma)


def epsilon_greedy_probs(q: torch.Tensor, eps: float) -> torch.Tensor:
    """π(a|s) of ε-greedy over ``q`` [..., |A|]: ε/|A| everywhere, + (1 − ε) on argmax_a q (first one on ties)."""
    n = q.shape[-1]
    greedy = torch.nn.functional.one_hot(q.argmax(-1), n).to(torch.float32)
    return eps / n + (1.0 - eps) * greedy


def next_actions(action: torch.Tensor, cut: torch.Tensor, sampled: torch.Tensor) -> torch.Tensor:
    """a'_t for a rollout [N, T]: the action the same env took at t + 1, except where the rollout is cut.

    ``cut`` [N, T] marks the steps whose next action was never taken by the collecting policy: episode ends
    (terminated or truncated: the env reset, the next stored action belongs to a new episode) and the last step
    of each env's rollout (its next action comes after the update). ``sampled`` holds, in row-major order of
    ``cut``, one action drawn there from π at the true next observation.
    """
    out = torch.roll(action, -1, dims=1)
    out[cut] = sampled.to(out.dtype)
    return out


def rollout_cuts(done: torch.Tensor) -> torch.Tensor:
    """Where :func:`next_actions` needs a fresh a': episode ends ``done`` [N, T] and every env's last step."""
    cut = done.clone()
    cut[:, -1] = True
    return cut
