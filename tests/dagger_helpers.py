"""Experts and learners for the DAgger tests: a scripted CartPole controller (named by import path, as a recipe's
``data.expert`` names a user's function) and deliberately worse policies that differ from it."""

from __future__ import annotations

from typing import Any

import numpy as np

from tests.experts import cartpole_pd

EXPERT = "tests.dagger_helpers:cartpole_expert"


cartpole_expert = cartpole_pd  # the scripted controller of tests/experts.py


def cartpole_opposite(obs: Any) -> np.ndarray:
    """The expert's action inverted: a learner that differs from the expert in every state (it falls fast)."""
    return 1 - cartpole_expert(obs)


def cartpole_cart_only(obs: Any) -> np.ndarray:
    """A poor learner: push towards the cart's velocity (ignores the pole); it differs from the expert in many but
    not all states."""
    return (np.asarray(obs)[:, 1] > 0).astype(np.int64)
