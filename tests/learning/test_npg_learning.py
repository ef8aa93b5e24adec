"""NPG learning checks (slow): bars, budgets and seeds are stated here and in docs/npg.md."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_npg_inverted_pendulum_950(learning_check) -> None:  # type: ignore[no-untyped-def]
    learning_check("npg/inverted-pendulum", 950)


def test_npg_cartpole_475(learning_check) -> None:  # type: ignore[no-untyped-def]
    learning_check("npg/cartpole", 475)
