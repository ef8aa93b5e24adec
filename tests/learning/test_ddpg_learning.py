"""DDPG learning check (slow): RL Zoo's Pendulum-v1 settings, 20k frames; bar and results in docs/ddpg.md."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_ddpg_pendulum_minus_200_within_20k_frames(learning_check) -> None:  # type: ignore[no-untyped-def]
    learning_check("ddpg/pendulum", -200)
