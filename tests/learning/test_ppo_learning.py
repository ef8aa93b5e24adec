"""PPO learning checks (slow): bars, budgets and seeds are stated here and in docs/ppo.md."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_ppo_cartpole_475_within_100k_frames(learning_check) -> None:  # type: ignore[no-untyped-def]
    learning_check("ppo/cartpole", 475)


def test_ppo_cartpole_bf16_mixed_475_within_100k_frames(learning_check) -> None:  # type: ignore[no-untyped-def]
    learning_check("ppo/cartpole", 475, ["trainer.precision=bf16-mixed"])


def test_ppo_pendulum_minus_250_within_200k_frames(learning_check) -> None:  # type: ignore[no-untyped-def]
    learning_check("ppo/pendulum", -250)
