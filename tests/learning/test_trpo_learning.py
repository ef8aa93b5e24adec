"""TRPO learning checks (slow): bars, budgets and seeds are stated here and in docs/trpo.md."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_trpo_cartpole_475(learning_check) -> None:  # type: ignore[no-untyped-def]
    learning_check("trpo/cartpole", 475)


def test_trpo_inverted_pendulum_950(learning_check) -> None:  # type: ignore[no-untyped-def]
    learning_check("trpo/inverted-pendulum", 950)
