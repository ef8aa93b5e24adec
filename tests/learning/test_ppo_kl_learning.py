"""KL-penalty PPO learning checks (slow): bars, budgets and seeds are stated here and in docs/ppo-kl.md."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_ppo_kl_cartpole_475(learning_check) -> None:  # type: ignore[no-untyped-def]
    learning_check("ppo-kl/cartpole", 475)


def test_ppo_kl_pendulum_minus_250(learning_check) -> None:  # type: ignore[no-untyped-def]
    learning_check("ppo-kl/pendulum", -250)
