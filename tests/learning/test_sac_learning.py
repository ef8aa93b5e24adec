"""SAC learning check (slow): Pendulum-v1, SB3's SAC defaults with lr 1e-3, 20k frames; results in docs/sac.md."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_sac_pendulum_minus_200_within_20k_frames(learning_check) -> None:  # type: ignore[no-untyped-def]
    learning_check("sac/pendulum", -200)
