"""The standard Atari preprocessing (``env.atari``, docs/atari.md), as gymnasium wrappers.

What gymnasium ships is used as it is: ``AtariPreprocessing`` (up to ``noop_max`` no-op actions after a reset,
``frame_skip`` repeats of each action with the max over the last two frames, grey, ``screen_size`` square) and
``FrameStackObservation`` (the last ``frame_stack`` frames, channels first, padded with the reset frame). What
gymnasium lacks is here, as RL Zoo's ``AtariWrapper`` has it (Mnih et al. 2015; Machado et al. 2018):
:class:`EpisodicLife` (a lost life ends the training episode but the game goes on: the next reset continues it;
gymnasium's ``terminal_on_life_loss`` would restart the game, so later lives would never be seen),
:class:`FireReset` (press FIRE after each reset in games that wait for it), :class:`SignReward` (gymnasium's
``ClipReward`` cannot be pickled) and :class:`PicklableAle` (the emulator's state in a checkpoint).

Order, innermost first: ALE env (``frameskip=1``) → PicklableAle → AtariPreprocessing → EpisodicLife (training)
→ FireReset → FrameStackObservation → SignReward (training). Evaluation envs get neither EpisodicLife nor
SignReward, so their episode is the whole game and their return its score.

``ale_py`` is imported only where an ``ALE/`` env is made (:func:`register_ale`).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from lrl.errors import RecipeError

PREFIX = "ALE/"


def register_ale() -> None:
    """Register the ``ALE/`` ids with gymnasium (imports ``ale_py``, whose wheel ships the ROMs). The emulator's
    banner on stderr is turned off: lrl's errors stay one line."""
    try:
        import ale_py
    except ImportError:
        raise RecipeError("Atari environments need ale-py: pip install 'lrl[atari]'") from None
    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
    gym.register_envs(ale_py)


def ale_of(env: gym.Env) -> Any:
    """The emulator (``ale_py.ALEInterface``) under ``env``'s wrappers."""
    base: Any = env.unwrapped
    return base.ale


class EpisodicLife(gym.Wrapper):
    """A lost life is the end of a training episode (``terminated``); the following reset only takes a no-op step
    and the game continues, until it is really over (SB3's ``EpisodicLifeEnv``)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.lives = 0
        self.game_over = True

    def step(self, action: Any) -> Any:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = terminated or truncated
        lives = ale_of(self.env).lives()
        if 0 < lives < self.lives:
            terminated = True
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs: Any) -> Any:
        if self.game_over:
            obs, info = self.env.reset(**kwargs)
        else:
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:  # the no-op ended the game: start a new one
                obs, info = self.env.reset(**kwargs)
        self.lives = ale_of(self.env).lives()
        return obs, info


class FireReset(gym.Wrapper):
    """Press FIRE (then action 2) after a reset, for games that do not start until FIRE is pressed (SB3's
    ``FireResetEnv``); an episode that ends on these steps is reset again."""

    def reset(self, **kwargs: Any) -> Any:
        self.env.reset(**kwargs)
        for action in (1, 2):
            obs, _, terminated, truncated, info = self.env.step(action)
            if terminated or truncated:
                self.env.reset(**kwargs)
        return obs, info


class SignReward(gym.RewardWrapper):
    """The reward's sign (Mnih et al. 2015's clipping; SB3's ``ClipRewardEnv``). gymnasium's ``ClipReward`` does the
    same to Atari's integer rewards but keeps a lambda, which cannot be pickled into a checkpoint."""

    def reward(self, reward: Any) -> float:
        return float(np.sign(reward))


class PicklableAle(gym.Wrapper):
    """Directly around ``gym.make``'s env: a pickled env keeps the emulator's state. ale-py's ``AtariEnv`` pickles
    as its constructor arguments (a fresh game), so this adds the emulator state (``cloneState`` with its RNG) and
    the env's generator (no-op resets draw from it) to the pickle and puts them back after unpickling: a resumed
    run continues each game where the checkpoint left it."""

    def __getstate__(self) -> dict[str, Any]:
        base: Any = self.env.unwrapped
        return {**self.__dict__, "_ale_state": base.ale.cloneState(include_rng=True),
                "_base_rng": (base._np_random, base._np_random_seed)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        ale_state, (rng, seed) = state.pop("_ale_state"), state.pop("_base_rng")
        self.__dict__.update(state)
        base: Any = self.env.unwrapped
        base.ale.restoreState(ale_state)
        base._np_random, base._np_random_seed = rng, seed


def has_fire(env: gym.Env) -> bool:
    base: Any = env.unwrapped
    meanings = base.get_action_meanings()
    return len(meanings) >= 3 and meanings[1] == "FIRE"


def make_kwargs(cfg: dict[str, Any]) -> dict[str, Any]:
    """What ``gym.make`` gets for an ``env.atari`` section: one frame per step (the skipping is the wrapper's)."""
    return {"frameskip": 1, "repeat_action_probability": float(cfg.get("repeat_action_probability", 0.0))}


def wrap(env: gym.Env, cfg: dict[str, Any], training: bool) -> gym.Env:
    """``env`` (an ALE env made with :func:`make_kwargs`) in the preprocessing ``cfg`` (an ``env.atari`` section as
    a dict) asks for; the life and reward wrappers only for ``training``."""
    from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

    env = AtariPreprocessing(PicklableAle(env), noop_max=cfg["noop_max"], frame_skip=cfg["frame_skip"],
                             screen_size=cfg["screen_size"], terminal_on_life_loss=False)
    if training and cfg["terminal_on_life_loss"]:
        env = EpisodicLife(env)
    fire = cfg["fire_reset"]
    if fire is True or (fire == "auto" and has_fire(env)):
        env = FireReset(env)
    env = FrameStackObservation(env, cfg["frame_stack"])
    if training and cfg["clip_reward"]:
        env = SignReward(env)
    return env
