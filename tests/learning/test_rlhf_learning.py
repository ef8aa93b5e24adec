"""Learning from preferences (slow): the synthetic annotator's labels must get PPO to >= 90 % of what the same PPO
reaches on the true reward (the issue's bar), with the labels, budgets and seeds stated here and in docs/rlhf.md.
ppo/cartpole reaches 500 (of 500) and ppo/inverted-pendulum 1000 (of 1000) at these budgets, so the bars are 450
and 900 on >= 4 of 5 seeds."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_rlhf_cartpole_450_with_200_labels_within_100k_frames(learning_check) -> None:  # type: ignore[no-untyped-def]
    learning_check("rlhf/cartpole", 450)


def test_rlhf_inverted_pendulum_900_with_200_labels_within_100k_frames(learning_check) -> None:  # type: ignore[no-untyped-def]
    learning_check("rlhf/inverted-pendulum", 900)
