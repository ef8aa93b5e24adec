"""DQN learning check (slow): RL-Zoo's CartPole-v1 settings with a linearly decaying learning rate, 50k frames;
bar and results in docs/dqn.md."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_dqn_cartpole_475_within_50k_frames(learning_check) -> None:  # type: ignore[no-untyped-def]
    learning_check("dqn/cartpole", 475)
