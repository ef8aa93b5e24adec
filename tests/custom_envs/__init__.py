"""A user's environment package, as lrl sees one: importing it registers ``LineWorld-v0`` with gymnasium, so a recipe
names the env as ``env.id: tests.custom_envs:LineWorld-v0`` (docs/environments.md)."""

from __future__ import annotations

import gymnasium as gym

from tests.custom_envs.lineworld import BlindLineWorld, LineWorld

__all__ = ["BlindLineWorld", "LineWorld"]

if "LineWorld-v0" not in gym.registry:
    gym.register(id="LineWorld-v0", entry_point="tests.custom_envs.lineworld:LineWorld", max_episode_steps=50)
if "BlindLineWorld-v0" not in gym.registry:
    gym.register(id="BlindLineWorld-v0", entry_point="tests.custom_envs.lineworld:BlindLineWorld",
                 max_episode_steps=50)
