"""Atari: the preprocessing chain (env.atari), image specs, the CNN encoders, uint8 and frame-shared replay."""

from __future__ import annotations

from pathlib import Path

import cv2
import gymnasium as gym
import numpy as np
import pytest
import torch
from tensordict import TensorDict
from torchrl.data import LazyTensorStorage, ReplayBuffer

from lrl.data.atari import register_ale
from lrl.data.collector import make_collector
from lrl.data.env import env_fn, make_vec_env, probe_env_spec
from lrl.data.frames import FrameReplay
from lrl.data.replay import KEYS, UniformPolicy
from lrl.errors import RecipeError
from lrl.networks import ActorCritic, body
from lrl.networks.encoders import ImpalaCNN, NatureCNN
from lrl.recipe.schema import EnvConfig
from lrl.spec import Spec, spec_from_spaces

pytest.importorskip("ale_py")


def _cfg(game: str = "Pong", **atari: object) -> EnvConfig:
    return EnvConfig(id=f"ALE/{game}-v5", atari=atari)  # type: ignore[arg-type]


def test_chain_gives_4x84x84_uint8_stacks_and_an_image_spec() -> None:
    env = env_fn(_cfg(), training=True)()
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert env.observation_space == gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    for _ in range(5):
        obs, *_ = env.step(0)
        assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    env.close()
    spec = probe_env_spec(_cfg())
    assert (spec.obs_kind, spec.obs_shape, spec.action_kind, spec.action_dim) == ("image", (4, 84, 84), "discrete", 6)


def test_frames_are_the_max_of_the_last_two_emulator_frames_of_each_skip() -> None:
    """Frame skip 4 with max-pooling, by hand on the bare emulator, the same seed and actions."""
    env = env_fn(_cfg(noop_max=0, fire_reset=False), training=False)()
    register_ale()
    raw = gym.make("ALE/Pong-v5", frameskip=1, repeat_action_probability=0.0)
    obs, _ = env.reset(seed=3)
    raw.reset(seed=3)
    ale = raw.unwrapped.ale  # type: ignore[attr-defined]
    pooled_differs = False
    for step in range(40):
        action = [0, 2, 3][step % 3]
        obs, *_ = env.step(action)
        screens = []
        for _ in range(4):
            raw.step(action)
            screens.append(ale.getScreenGrayscale().copy())
        expected = cv2.resize(np.maximum(screens[-2], screens[-1]), (84, 84), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(obs[-1], expected)
        last_only = cv2.resize(screens[-1], (84, 84), interpolation=cv2.INTER_AREA)
        pooled_differs |= not np.array_equal(expected, last_only)
    assert pooled_differs  # the max over two frames mattered at least once (a moving ball)
    env.close()
    raw.close()


def test_reset_takes_between_1_and_noop_max_noops() -> None:
    frames = []
    for seed in range(5):
        env = env_fn(_cfg(noop_max=30, fire_reset=False), training=False)()
        env.reset(seed=seed)
        frames.append(env.unwrapped.ale.getEpisodeFrameNumber())  # type: ignore[attr-defined]
        env.close()
    assert all(1 <= f <= 30 for f in frames) and len(set(frames)) > 1
    env = env_fn(_cfg(noop_max=0, fire_reset=False), training=False)()
    env.reset(seed=0)
    assert env.unwrapped.ale.getEpisodeFrameNumber() == 0  # type: ignore[attr-defined]
    env.close()


def test_training_clips_rewards_and_ends_on_a_lost_life_evaluation_plays_the_game_for_its_score() -> None:
    """SpaceInvaders pays 5-30 points per invader and has 3 lives: training sees signs and one life per episode,
    evaluation the score and the whole game."""
    cfg = _cfg("SpaceInvaders")
    rng = np.random.default_rng(0)
    train, evaluate = env_fn(cfg, training=True)(), env_fn(cfg, training=False)()
    train.reset(seed=0)
    train_rewards, life_lost_end = [], False
    for _ in range(600):
        _, r, term, trunc, _ = train.step(int(rng.integers(6)))
        train_rewards.append(r)
        if term:
            life_lost_end = train.unwrapped.ale.lives() > 0  # type: ignore[attr-defined]
            break
    assert set(train_rewards) <= {0.0, 1.0} and 1.0 in train_rewards
    assert life_lost_end  # the training episode ended with lives left
    evaluate.reset(seed=0)
    rewards, lives_seen, ended = [], set(), False
    for _ in range(5000):
        _, r, term, trunc, _ = evaluate.step(int(rng.integers(6)))
        rewards.append(r)
        lives = evaluate.unwrapped.ale.lives()  # type: ignore[attr-defined]
        lives_seen.add(lives)
        if term or trunc:
            ended = True
            break
    assert ended and lives == 0 and len(lives_seen) > 1  # one episode through every life to game over
    assert max(rewards) > 1 and sum(rewards) % 5 == 0  # the game's own points
    train.close()
    evaluate.close()


def test_fire_reset_auto_follows_the_action_set() -> None:
    from lrl.data.atari import FireReset

    def has(env: gym.Env) -> bool:
        while isinstance(env, gym.Wrapper):
            if isinstance(env, FireReset):
                return True
            env = env.env
        return False

    assert has(env_fn(_cfg("Breakout"))()) and not has(env_fn(_cfg("Breakout", fire_reset=False))())
    assert has(env_fn(_cfg("Pong"))()) and has(env_fn(_cfg("Freeway", fire_reset=True))())
    assert not has(env_fn(_cfg("Freeway"))())  # NOOP, UP, DOWN: no FIRE to press


def test_image_spec_rules() -> None:
    img = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    assert spec_from_spaces("x", img, gym.spaces.Discrete(3)).obs_kind == "image"
    assert spec_from_spaces("x", gym.spaces.Box(0, 1, (4, 84, 84)), gym.spaces.Discrete(3)).obs_kind == "box"
    with pytest.raises(RecipeError, match="channels last"):
        spec_from_spaces("x", gym.spaces.Box(0, 255, (96, 96, 3), np.uint8), gym.spaces.Discrete(3))


SPEC = Spec("ALE/Pong-v5", (4, 84, 84), "discrete", 6, obs_kind="image")


def test_cnn_output_shapes_for_the_spec() -> None:
    x = torch.randint(0, 256, (5, 4, 84, 84), dtype=torch.uint8)
    nature, impala = NatureCNN((4, 84, 84)), ImpalaCNN((4, 84, 84))
    assert nature(x).shape == (5, 3136) and nature.out_dim == 3136  # 64 x 7 x 7
    assert impala(x).shape == (5, 3872) and impala.out_dim == 3872  # 32 x 11 x 11
    q, width = body(SPEC, [512], "relu", "nature", out_dim=6)
    assert width == 6 and q(x).shape == (5, 6)
    net = ActorCritic(SPEC, [256], "relu", shared=True, encoder="impala")
    (logp,) = net.policy_params(x)
    assert logp.shape == (5, 6) and net.value(x).shape == (5,)
    rollout = x.reshape(5, 1, 4, 84, 84).expand(5, 3, 4, 84, 84)  # [N, T, C, H, W]: any leading dims
    assert net.value(rollout).shape == (5, 3)
    # uint8 pixels are scaled on the device: the same as float pixel values
    torch.testing.assert_close(q(x), q(x.float()))
    conv = nature.net[0]
    torch.testing.assert_close(nature.net[:2](x.float() / 255), torch.relu(torch.nn.functional.conv2d(
        x.float() / 255, conv.weight, conv.bias, stride=4)))


def _rollouts(cfg: EnvConfig, n_envs: int, steps: int, rollouts: int) -> list[TensorDict]:
    spec = probe_env_spec(cfg)
    collector = make_collector("lean", make_vec_env(cfg, n_envs), spec, UniformPolicy(spec), steps_per_env=steps,
                               env_seeds=list(range(n_envs)), device=torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    collector.generator = gen
    out = [collector.rollout() for _ in range(rollouts)]
    collector.shutdown()
    return out


def test_replay_keeps_uint8_and_shares_frames_exactly() -> None:
    """Frame-shared storage returns the very stacks a plain buffer stores, for every slot whose frames are still
    there, across episode ends (short episodes) and after the buffer wrapped; at 2 frames of 84x84 per
    transition."""
    cfg = EnvConfig(id="ALE/Pong-v5", max_episode_steps=400, atari={})  # type: ignore[arg-type]
    rollouts = _rollouts(cfg, 2, 16, 12)  # 384 transitions, episodes of ~100 agent steps
    assert rollouts[0]["observation"].dtype == torch.uint8 and rollouts[0]["next", "observation"].dtype == torch.uint8
    cap = 150
    plain = ReplayBuffer(storage=LazyTensorStorage(cap))
    shared_buf = ReplayBuffer(storage=LazyTensorStorage(cap))
    shared = FrameReplay(shared_buf, 2, 4, torch.Generator().manual_seed(1))
    dones = 0
    for td in rollouts:
        plain.extend(td.reshape(-1).select(*KEYS))
        shared.extend(td)
        dones += int(td["next", "done"].sum())
    assert dones >= 2
    chains = shared._chains(torch.arange(cap), shared_buf.storage._storage["wid"],  # type: ignore[attr-defined]
                            shared_buf.storage._storage["prev"], cap)  # type: ignore[attr-defined]
    intact = chains[:, 0] >= 0
    assert 0 < int((~intact).sum()) <= 2 * 3  # at most 3 per env lost their earliest frames
    got = shared.gather(chains[intact])
    want = plain.storage.get(torch.arange(cap)[intact])
    for key in KEYS:
        assert got[key].dtype == want[key].dtype, key
        assert torch.equal(got[key], want[key]), key
    assert got["observation"].dtype == torch.uint8
    sample = shared.sample(64)
    assert sample["observation"].shape == (64, 4, 84, 84) and sample["observation"].dtype == torch.uint8
    per_transition = sum(v.element_size() * v[0].numel() for v in shared_buf.storage._storage.values(  # type: ignore[attr-defined]
        include_nested=True, leaves_only=True))
    assert per_transition <= 2 * 84 * 84 + 64


def test_shared_frames_refuse_observations_that_are_not_frame_stacks() -> None:
    td = _rollouts(EnvConfig(id="ALE/Pong-v5", atari={}), 1, 4, 1)[0]  # type: ignore[arg-type]
    td["next", "observation"][0, 1, 0] += 1
    buf = FrameReplay(ReplayBuffer(storage=LazyTensorStorage(10)), 1, 4, torch.Generator())
    with pytest.raises(Exception, match="do not share their frames"):
        buf.extend(td)


def test_encoder_and_normalisation_are_refused_where_they_do_not_apply() -> None:
    from lrl.launch import probe_spec
    from lrl.recipe import load

    with pytest.raises(RecipeError, match=r"algo\.encoder=impala: CartPole-v1 has box observations"):
        probe_spec(load("ppo/cartpole", ["algo.encoder=impala"]))
    with pytest.raises(RecipeError, match=r"env\.normalize_obs: ALE/Pong-v5 has image observations"):
        probe_spec(load("ppo/pong", ["env.normalize_obs=true"]))


def test_a_pickled_env_continues_the_same_game() -> None:
    """Checkpoints pickle the envs: emulator state, no-op generator, lives and frame stack all come back."""
    import pickle

    env = env_fn(EnvConfig(id="ALE/Breakout-v5", atari={}, max_episode_steps=400), training=True)()  # type: ignore[arg-type]
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(37):
        env.step(int(rng.integers(4)))
    copy, ends = pickle.loads(pickle.dumps(env)), 0
    for _ in range(300):
        a = int(rng.integers(4))
        one, two = env.step(a), copy.step(a)
        assert np.array_equal(one[0], two[0]) and one[1:4] == two[1:4]
        if one[2] or one[3]:
            ends += 1
            assert np.array_equal(env.reset()[0], copy.reset()[0])
    assert ends >= 2


def test_ale_py_is_imported_only_for_atari_envs() -> None:
    import subprocess
    import sys

    code = ("import sys; from typer.testing import CliRunner; from lrl.cli import app; "
            "r = CliRunner().invoke(app, ['validate', 'ppo/cartpole']); assert r.exit_code == 0, r.output; "
            "from lrl.data.env import probe_env_spec; from lrl.recipe.schema import EnvConfig; "
            "probe_env_spec(EnvConfig(id='CartPole-v1')); "
            "assert 'ale_py' not in sys.modules and 'cv2' not in sys.modules, 'imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])  # this checkout's lrl, installed or not
    assert proc.returncode == 0, proc.stderr[-2000:]
