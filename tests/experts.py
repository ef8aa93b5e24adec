"""Scripted experts for the imitation tests, named like a user's own expert: ``lrl demos tests.experts:cartpole_pd``.

An expert maps a batch of raw observations to a batch of actions (:mod:`lrl.data.expert`).
"""

from __future__ import annotations

import numpy as np


def cartpole_pd(obs: np.ndarray) -> np.ndarray:
    """Push the cart towards where the pole is falling: a proportional-derivative rule on the pole angle θ and its
    angular velocity θ̇ (action 1 = push right when θ + 0.5·θ̇ > 0). Balances CartPole-v1 for the full 500 steps."""
    obs = np.asarray(obs)
    return (obs[..., 2] + 0.5 * obs[..., 3] > 0).astype(np.int64)


def pendulum_pd(obs: np.ndarray) -> np.ndarray:
    """A crude Pendulum-v1 torque (−2·sin θ − 0.5·θ̇ from cos θ, sin θ, θ̇): a continuous expert for the tests."""
    obs = np.asarray(obs)
    return np.clip(-2.0 * obs[:, 1:2] - 0.5 * obs[:, 2:3], -2.0, 2.0).astype(np.float32)


def wrong_shape(obs: np.ndarray) -> np.ndarray:
    """An expert that answers one action for the whole batch, twice: refused with one line."""
    return np.zeros((2, 3))
