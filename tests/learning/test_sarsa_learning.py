"""SARSA learning check (slow): CartPole-v1, greedy evaluation; bar, budget and results in docs/sarsa.md."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_sarsa_cartpole_475(learning_check) -> None:  # type: ignore[no-untyped-def]
    learning_check("sarsa/cartpole", 475)
