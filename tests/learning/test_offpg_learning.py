"""Off-policy PG learning checks (slow): bars, budgets and seeds are stated here and in docs/offpg.md."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_offpg_cartpole_400_within_200k_frames(learning_check) -> None:  # type: ignore[no-untyped-def]
    learning_check("offpg/cartpole", 400)


def test_offpg_inverted_pendulum_900_within_300k_frames(learning_check) -> None:  # type: ignore[no-untyped-def]
    learning_check("offpg/inverted-pendulum", 900)
