"""Evaluation videos: one episode of the evaluated policy as an animated GIF, logged to the MLflow run.

Rendering is off-screen (``render_mode="rgb_array"``). Classic-control and Box2D envs draw with pygame; SDL then
prints "XDG_RUNTIME_DIR is invalid or not set" on a machine without a desktop session unless its video driver is
the dummy one, so :func:`offscreen_defaults` sets ``SDL_VIDEODRIVER=dummy`` (and ``SDL_AUDIODRIVER=dummy``: ALSA
complaints on hosts without a sound card) where they are not set. MuJoCo needs an OpenGL back end: without a
display and without ``MUJOCO_GL``, EGL is chosen (``MUJOCO_GL=osmesa`` for software rendering). A run that
cannot render (no back end, an env without ``rgb_array``) or cannot store the video warns once and trains on
without videos; nothing here takes a run down.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lrl.data.env import env_fn
from lrl.errors import LrlError
from lrl.recipe.schema import EnvConfig

log = logging.getLogger("lrl")

VIDEO_DIR = "videos"  # artifact folder of a run's evaluation videos: videos/eval-<clock:012d>.gif


def offscreen_defaults() -> None:
    """Environment variables for off-screen rendering, where the user has not set them (read when pygame / MuJoCo
    first create a rendering context, so this runs before the first render)."""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("MUJOCO_GL", "egl")


def record_video(policy: Callable[[Any], np.ndarray], env_cfg: EnvConfig, seed: int, out_dir: Path,
                 fps: int = 25, name: str | None = None) -> Path:
    """One episode (seed ``seed``) rendered to an animated GIF (Pillow; no video codec needed), ``name`` (default
    ``<env id>-seed<seed>``, ``/`` and ``:`` as ``-``) + ``.gif`` in ``out_dir``. One frame after the reset and one
    per step, every k-th of them for episodes over 600 steps. A GIF times its frames in centiseconds (25 fps: 40 ms
    each) and the encoder merges identical consecutive frames into one longer frame, so the frames kept are the
    total duration over the frame time, not the number of GIF frames."""
    offscreen_defaults()
    env = env_fn(env_cfg, render_mode="rgb_array")()
    try:
        obs, _ = env.reset(seed=seed)
        frames = [env.render()]
        done = False
        while not done:
            batch = {k: np.asarray(v)[None] for k, v in obs.items()} if isinstance(obs, dict) else np.asarray(obs)[None]
            obs, _, term, trunc, _ = env.step(policy(batch)[0])  # a goal observation: each part batched
            frames.append(env.render())
            done = bool(term or trunc)
    finally:
        env.close()
    if not isinstance(frames[0], np.ndarray):
        raise LrlError(f"{env_cfg.id} renders no rgb_array frames (render() returned {type(frames[0]).__name__})")
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = env_cfg.id.replace("/", "-").replace(":", "-")  # ALE/Pong-v5, my_pkg.envs:MyEnv-v0: one file name
    path = out_dir / f"{name or f'{stem}-seed{seed}'}.gif"
    write_gif(frames[:: max(1, math.ceil(len(frames) / 600))], path, fps)
    return path


def write_gif(frames: list[Any], path: Path, fps: int = 25) -> None:
    """``frames`` (RGB arrays) as a looping animated GIF at ``path``: one palette for the whole clip, from up to 8 of
    its frames (a palette per frame costs ~8x the encoding time). Evaluation videos and the clips people label."""
    from PIL import Image

    sample = frames[:: max(1, len(frames) // 8)][:8]
    palette = Image.fromarray(np.concatenate([np.asarray(f) for f in sample], axis=0)).quantize(colors=256)
    images = [Image.fromarray(np.asarray(f)).quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]
    with open(path, "wb") as f:  # a file object: the name may lack the .gif suffix (the store's temporary names)
        images[0].save(f, format="GIF", save_all=True, append_images=images[1:], duration=10 * round(100 / fps),
                       loop=0, optimize=False)


class EvalVideos:
    """Records and logs one evaluation episode per evaluation; after the first failure, warns once and stops."""

    def __init__(self, env_cfg: EnvConfig, seed: int) -> None:
        self.env_cfg, self.seed = env_cfg, seed
        self.failed = False
        self.logged: list[str] = []  # artifact paths, for the caller's report

    def record(self, policy: Callable[[Any], np.ndarray], clock: int, loggers: list[Any]) -> None:
        if self.failed:
            return
        try:
            with tempfile.TemporaryDirectory() as tmp:
                path = record_video(policy, self.env_cfg, self.seed, Path(tmp), name=f"eval-{clock:012d}")
                for logger in loggers:
                    run_id = getattr(logger, "run_id", None)
                    if run_id and hasattr(logger.experiment, "log_artifact"):
                        logger.experiment.log_artifact(run_id, str(path), artifact_path=VIDEO_DIR)
                        self.logged.append(f"{VIDEO_DIR}/{path.name}")
        except Exception as err:  # rendering, encoding or the artifact store: never the run's end
            self.failed = True
            hint = ""
            if _is_mujoco(self.env_cfg.id):
                hint = " (MuJoCo renders off-screen with MUJOCO_GL=egl or MUJOCO_GL=osmesa)"
            log.warning("evaluation videos are off for this run: %s: %s%s; set eval.video=false to skip them",
                        type(err).__name__, " ".join(str(err).split())[:300], hint)


def _is_mujoco(env_id: str) -> bool:
    try:
        import gymnasium as gym

        return "mujoco" in str(gym.spec(env_id).entry_point)
    except Exception:
        return False
