"""A2C learning checks (slow): bars, budgets and seeds are stated here and in docs/a2c.md."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_a2c_cartpole_475_within_500k_frames(learning_check) -> None:  # type: ignore[no-untyped-def]
    learning_check("a2c/cartpole", 475)


def test_a2c_inverted_pendulum_950_within_100k_frames(learning_check) -> None:  # type: ignore[no-untyped-def]
    learning_check("a2c/inverted-pendulum", 950)
