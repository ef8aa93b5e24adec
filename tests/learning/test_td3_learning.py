"""TD3 learning check (slow): RL Zoo's Pendulum-v1 settings, 20k frames; bar and results in docs/td3.md."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_td3_pendulum_minus_200_within_20k_frames(learning_check) -> None:  # type: ignore[no-untyped-def]
    learning_check("td3/pendulum", -200)
