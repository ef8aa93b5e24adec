"""A preference store whose queries have real clips: CartPole segments rendered to GIFs, as a run writes them
(lrl/rlhf/store.py). For the labelling page's tests and the end-to-end test of a run that uses people's labels."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lrl.rlhf.store import PreferenceStore

if TYPE_CHECKING:
    from lrl.rlhf.label_server import LabelServer


def _write_gif(frames: list[np.ndarray], path: Path, scale: int, fps: int) -> None:
    from PIL import Image

    from lrl.video import write_gif

    write_gif([np.asarray(Image.fromarray(f).reduce(scale)) if scale > 1 else f for f in frames], path, fps)


def cartpole_segment(env: Any, k: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """k steps of a noisy balancing policy from a fresh start (a new start is drawn until k steps fit in one
    episode): observations, actions, true rewards and the rendered frames."""
    while True:
        obs, _ = env.reset(seed=int(rng.integers(2**31)))
        eps = rng.uniform(0.1, 0.6)  # how often the policy acts at random: segments of different quality
        out: dict[str, list[Any]] = {"obs": [], "act": [], "rew": [], "frames": []}
        for _ in range(k):
            act = int(rng.integers(2)) if rng.random() < eps else int(obs[2] + 0.5 * obs[3] > 0)
            out["obs"].append(obs)
            out["act"].append(act)
            out["frames"].append(env.render())
            obs, rew, term, trunc, _ = env.step(act)
            out["rew"].append(rew)
            if term or trunc:
                break
        if len(out["act"]) == k:
            return {"obs": np.asarray(out["obs"], np.float32), "act": np.asarray(out["act"], np.int64),
                    "rew": np.asarray(out["rew"], np.float32), "frames": np.asarray(out["frames"])}


def make_cartpole_store(root: Path | str, n: int, run: str = "run-test", k: int = 15, seed: int = 0,
                        scale: int = 2, fps: int = 15, prefix: str = "q", start: int = 0) -> PreferenceStore:
    """A store at ``root`` (created, or the existing one of ``run``) with ``n`` more queries ``{prefix}{start}``,
    ``{prefix}{start+1}``, ...: each two CartPole segments of ``k`` steps (``obs0, act0, rew0, obs1, act1, rew1``) and
    their GIF clips (frames reduced ``scale`` times: 300x200 by default). About 40 ms a query at k=15."""
    import gymnasium as gym

    from lrl.video import offscreen_defaults

    offscreen_defaults()
    store = PreferenceStore(root, run=run, env="CartPole-v1")
    rng = np.random.default_rng(seed + start)
    env = gym.make("CartPole-v1", render_mode="rgb_array")
    try:
        for i in range(start, start + n):
            a, b = cartpole_segment(env, k, rng), cartpole_segment(env, k, rng)
            segments = {f"{key}{side}": seg[key] for side, seg in enumerate((a, b)) for key in ("obs", "act", "rew")}
            clips = tuple((lambda p, fr=seg["frames"]: _write_gif(list(fr), p, scale, fps)) for seg in (a, b))
            store.add_query(f"{prefix}{i}", segments, round=0, clips=clips)  # type: ignore[arg-type]
    finally:
        env.close()
    return store


@contextlib.contextmanager
def label_server(store: PreferenceStore, **kwargs: Any) -> Iterator[LabelServer]:
    """``lrl label``'s server on a free port in a thread of this process (``kwargs``: host, token, lease_s,
    poll_ms); ``server.url`` is the page's address."""
    from lrl.rlhf.label_server import LabelServer

    server = LabelServer(store, port=0, **kwargs)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
