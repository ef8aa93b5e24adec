"""Evaluation videos: one GIF per evaluation in the run's MLflow artifacts, as long as the evaluated episode, and
``lrl eval --video``; a render or artifact-store failure warns once and raises nothing."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
from mlflow import MlflowClient
from PIL import Image, ImageSequence

import lrl
from lrl.callbacks.evaluation import EVAL_SEED_OFFSET
from lrl.recipe.schema import EnvConfig
from lrl.video import EvalVideos
from tests.conftest import run_lrl

FRAME_MS = 40  # 25 fps; a GIF times its frames in centiseconds


def _episode_length(run_or_ckpt: Path, seed: int) -> int:
    """The deterministic policy's episode on CartPole (seed ``seed``), run here with the checkpoint's policy."""
    policy = lrl.load_policy(run_or_ckpt)
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=seed)
    steps, done = 0, False
    while not done:
        obs, _, term, trunc, _ = env.step(policy(obs[None])[0])
        steps, done = steps + 1, term or trunc
    return steps


def _gif(path: Path) -> tuple[int, int, tuple[int, int]]:
    """(GIF frames, total duration in ms, frame size)."""
    with Image.open(path) as im:
        durations = [frame.info["duration"] for frame in ImageSequence.Iterator(im)]
        return len(durations), sum(durations), im.size


def _rendered_frames(path: Path, episode_length: int) -> None:
    frames, total_ms, size = _gif(path)
    assert size == (600, 400)  # CartPole's rgb_array frame
    # one frame after the reset and one per step; identical consecutive frames are merged into longer ones
    assert total_ms == (episode_length + 1) * FRAME_MS
    assert 1 < frames <= episode_length + 1


def test_eval_videos_are_mlflow_artifacts_as_long_as_the_episode(tracking_uri: str) -> None:
    out = run_lrl("train", "ppo/cartpole", "budget.frames=2048", "eval.every=1024", "eval.episodes=2",
                  "checkpoint.every=1024", "--run-dir", "run")
    assert out.returncode == 0, out.stderr
    assert "XDG_RUNTIME_DIR" not in out.stderr and "ALSA" not in out.stderr and "Traceback" not in out.stderr
    run_id = re.search(r"MLflow run (\w+)", out.stderr).group(1)  # type: ignore[union-attr]
    client = MlflowClient(tracking_uri)
    videos = sorted(a.path for a in client.list_artifacts(run_id, "videos"))
    assert videos == ["videos/eval-000000001024.gif", "videos/eval-000000002048.gif"]
    local = Path(client.download_artifacts(run_id, "videos", "downloaded"))
    seed = 0 + EVAL_SEED_OFFSET  # the recipe's seed; the video is the first evaluation episode
    for clock, ckpt in ((1024, "run/checkpoints/frames-0000001024.ckpt"), (2048, "run/checkpoints/last.ckpt")):
        _rendered_frames(local / f"eval-{clock:012d}.gif", _episode_length(Path(ckpt), seed))

    out = run_lrl("eval", "run", "--episodes", "1", "--seed", "7", "--video", "vids")
    assert out.returncode == 0 and out.stderr == "", out.stderr  # no SDL / pygame noise
    _rendered_frames(Path("vids/CartPole-v1-seed7.gif"), _episode_length(Path("run"), 7))


class _NoRender(gym.Env):  # type: ignore[type-arg]
    """An env whose renderer fails, as MuJoCo's does without an OpenGL back end."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 25}  # noqa: RUF012  # gymnasium's own attribute

    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, render_mode: str | None = None) -> None:
        self.render_mode = render_mode

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        return np.zeros(2, np.float32), 0.0, True, False, {}

    def render(self) -> np.ndarray:
        raise RuntimeError("an OpenGL platform library has not been loaded into this process")


def _policy(obs: np.ndarray) -> np.ndarray:
    return np.zeros(len(obs), np.int64)


def test_a_render_failure_warns_once_and_raises_nothing(caplog: pytest.LogCaptureFixture, tracking_uri: str) -> None:
    gym.register("LrlTestNoRender-v0", entry_point=f"{__name__}:_NoRender")
    client = MlflowClient(tracking_uri)
    run = client.create_run(client.create_experiment("video-failures"))
    logger = SimpleNamespace(run_id=run.info.run_id, experiment=client)
    videos = EvalVideos(EnvConfig(id="LrlTestNoRender-v0"), seed=0)
    with caplog.at_level(logging.WARNING, logger="lrl"):
        for clock in (100, 200, 300):
            videos.record(_policy, clock, [logger])
    warnings = [r.getMessage() for r in caplog.records if r.name == "lrl"]
    assert len(warnings) == 1 and "OpenGL platform library" in warnings[0], warnings
    assert videos.failed and videos.logged == [] and client.list_artifacts(run.info.run_id) == []


def test_an_artifact_store_failure_warns_once_and_raises_nothing(caplog: pytest.LogCaptureFixture,
                                                                 tracking_uri: str) -> None:
    gone = SimpleNamespace(run_id="0" * 32, experiment=MlflowClient(tracking_uri))  # a run the store does not hold
    videos = EvalVideos(EnvConfig(id="CartPole-v1"), seed=0)
    with caplog.at_level(logging.WARNING, logger="lrl"):
        for clock in (100, 200):
            videos.record(_policy, clock, [gone])
    warnings = [r.getMessage() for r in caplog.records if r.name == "lrl"]
    assert len(warnings) == 1 and "evaluation videos are off" in warnings[0], warnings
    assert videos.logged == []
