"""ε-greedy acting over action values, for the value-based algorithms (DQN, SARSA; Rossi §2.1, §2.10).

:class:`EpsilonGreedy` is the collection policy ``(obs, generator) -> {"action"}``: with probability ε a uniform
draw over *all* actions, else argmax_a Q(s, a). :func:`epsilon` is ε as a function of the clock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn


def epsilon(frames: int, start: float, end: float, decay_frames: int,
            schedule: Literal["linear", "exponential"] = "linear") -> float:
    """ε of ε-greedy exploration at a given frame count: from ``start`` to ``end`` over ``decay_frames``
    ("usually ε is progressively decreased during learning", Rossi §2.1), then constant."""
    if decay_frames <= 0 or frames >= decay_frames:
        return end
    progress = frames / decay_frames
    if schedule == "linear":
        return start + (end - start) * progress
    return start * (end / start) ** progress if start > 0 and end > 0 else end


class EpsilonGreedy(nn.Module):
    """ε-greedy over ``q(obs)`` [B, n]; ``eps()`` is read at every call, so a schedule follows the clock."""

    def __init__(self, q: Callable[[torch.Tensor], torch.Tensor], eps: Callable[[], float], n: int) -> None:
        super().__init__()
        self.q, self.eps, self.n = q, eps, n

    def forward(self, obs: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        greedy = self.q(obs).argmax(-1)
        explore = torch.rand(greedy.shape, generator=generator, device=obs.device) < self.eps()
        random = torch.randint(self.n, greedy.shape, generator=generator, device=obs.device)
        return {"action": torch.where(explore, random, greedy)}

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        """``RLModule.act``: the greedy action, or an ε-greedy one drawn with a fresh (unseeded) generator."""
        if deterministic:
            return self.q(obs).argmax(-1)
        return self(obs, torch.Generator(device=obs.device))["action"]
