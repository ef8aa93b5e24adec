"""REINFORCE learning checks (slow): bars, budgets and seeds are stated here and in docs/reinforce.md."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_reinforce_value_baseline_cartpole_475_within_200k_frames(learning_check) -> None:  # type: ignore[no-untyped-def]
    learning_check("reinforce/cartpole", 475)


def test_reinforce_inverted_pendulum_900_within_300k_frames(learning_check) -> None:  # type: ignore[no-untyped-def]
    learning_check("reinforce/inverted-pendulum", 900)
