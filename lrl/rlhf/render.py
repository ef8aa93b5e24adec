"""Rendered query segments for people (``rlhf.annotator: human``, docs/rlhf.md): a separate render env
(``render_mode="rgb_array"``) plays the current collection policy; each segment keeps its frames, written as a GIF
clip (Pillow) beside the query in the preference store. These frames are not training frames: they do not count in
the budget and are logged as ``rm/render_frames``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from lrl.errors import RecipeError
from lrl.video import write_gif


def gif_writer(frames: list[np.ndarray], fps: int = 25) -> Any:
    """A ``path -> None`` writer of ``frames`` as an animated GIF (the store writes it to a temporary name)."""
    return lambda path: write_gif(frames, Path(path), fps)


class SegmentRenderer:
    """Plays the collection policy in one rendering env and cuts segments of k steps with their frames."""

    def __init__(self, env_cfg: Any, seed: int) -> None:
        from lrl.data.env import env_fn
        from lrl.video import offscreen_defaults
        offscreen_defaults()
        self.make = env_fn(env_cfg, render_mode="rgb_array")
        self.env: Any = None
        self.seed = seed
        self.episodes = 0
        self.obs: Any = None
        self.frames = 0
        self.env_id = env_cfg.id

    def check(self) -> None:
        """One clear line at start when the env cannot render rgb_array frames."""
        try:
            self.env = self.make()
            self.env.reset(seed=self.seed)
            frame = self.env.render()
        except Exception as err:
            raise RecipeError(f"rlhf.annotator=human needs frames, but {self.env_id} cannot render rgb_array "
                              f"({type(err).__name__}: {err}); use rlhf.annotator=synthetic") from None
        if not isinstance(frame, np.ndarray):
            raise RecipeError(f"rlhf.annotator=human needs frames, but {self.env_id} renders no rgb_array frames "
                              "(render() returned None); use rlhf.annotator=synthetic")
        self.obs = None

    def segment(self, policy: Any, k: int, generator: torch.Generator, device: torch.device) -> dict[str, Any]:
        obs_l, act_l, frames, rewards = [], [], [], []
        terminated = False
        for _ in range(k):
            if self.obs is None:
                self.obs, _ = self.env.reset(seed=self.seed + 1000 * self.episodes)
                self.episodes += 1
            frames.append(self.env.render())
            o = torch.as_tensor(np.asarray(self.obs), dtype=torch.float32, device=device)
            with torch.no_grad():
                a = policy(o.unsqueeze(0), generator)["action"][0].cpu()
            obs_l.append(o.cpu())
            act_l.append(a)
            self.obs, r, term, trunc, _ = self.env.step(a.numpy())
            rewards.append(float(r))
            self.frames += 1
            if term or trunc:
                self.obs = None
                terminated = bool(term)
                break
        real = len(obs_l)
        absorbed = torch.arange(k) >= real
        idx = torch.arange(k).clamp_max(real - 1)
        if real < k and not terminated:  # a truncation inside the segment: start again from the next episode
            return self.segment(policy, k, generator, device)
        return {"obs": torch.stack(obs_l)[idx], "act": torch.stack(act_l)[idx], "absorbed": absorbed,
                "true_return": sum(rewards), "frames": frames}

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
