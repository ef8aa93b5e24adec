"""The synthetic annotator (B-Pref's simulated teacher, Lee et al. 2021; docs/rlhf.md): it compares two segments
by their TRUE returns R1, R2 (the environment's reward, never shown to the learner):

- skip ("can't tell") with probability ``skip``;
- ``equal`` when |R1 − R2| ≤ ``equal_threshold``;
- otherwise σ1 is preferred with probability sigmoid(β (R1 − R2)) (``beta: null``: a perfectly rational teacher,
  the larger return wins), and the answer is flipped with probability ``mistake``.
Seeded: the same segments and seed give the same labels.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


class SyntheticAnnotator:
    def __init__(self, *, beta: float | None = None, mistake: float = 0.0, equal_threshold: float = 0.0,
                 skip: float = 0.0, seed: int = 0) -> None:
        self.beta, self.mistake, self.equal_threshold, self.skip = beta, mistake, equal_threshold, skip
        self.rng = np.random.default_rng(seed)

    def label(self, ret1: float, ret2: float) -> str:
        u = self.rng.random(3)
        if u[0] < self.skip:
            return "skip"
        diff = ret1 - ret2
        if abs(diff) <= self.equal_threshold:
            return "equal"
        p1 = (1.0 if diff > 0 else 0.0) if self.beta is None else 1.0 / (1.0 + math.exp(-self.beta * diff))
        left = bool(u[1] < p1)
        if u[2] < self.mistake:
            left = not left
        return "left" if left else "right"

    def state_dict(self) -> dict[str, object]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
