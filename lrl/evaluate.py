"""Deterministic evaluation and the exported policy (``lrl.load_policy``).

A :class:`Policy` maps a batch of raw gymnasium observations (numpy) to a batch of actions (numpy), with the
run's observation normalisation applied inside, so a trained agent can be used outside lrl with plain numpy.
Evaluation runs each episode to its end on its own env with its own seed (``seed + i``), in waves of vector
envs, so the result does not favour short episodes. Where the env reports success (gymnasium-robotics:
``info["success"]`` or ``info["is_success"]``), each episode's flag at its last step is kept and the success rate
reported beside the return.
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from lrl.data.env import env_fn
from lrl.errors import LrlError
from lrl.recipe.schema import EnvConfig, algo_arguments
from lrl.spec import policy_input, spec_from_dict


class Policy:
    """Callable policy: ``actions = policy(observations)`` on numpy batches."""

    def __init__(self, module: Any, obs_stats: dict[str, Any] | None, clip_obs: float,
                 deterministic: bool = True) -> None:
        self.module = module.eval()
        self.deterministic = deterministic
        self.obs_stats, self.clip_obs = obs_stats, clip_obs
        self.spec = module.spec
        self._low = np.asarray(self.spec.action_low, np.float32) if self.spec.action_low else None
        self._high = np.asarray(self.spec.action_high, np.float32) if self.spec.action_high else None

    def normalize(self, obs: Any) -> np.ndarray:
        obs = np.asarray(policy_input(obs), np.float32)  # a goal observation: observation ++ desired goal
        if self.obs_stats is None:
            return obs
        out = (obs - self.obs_stats["mean"]) / np.sqrt(self.obs_stats["var"] + 1e-8)
        return np.clip(out, -self.clip_obs, self.clip_obs).astype(np.float32)

    @torch.no_grad()
    def __call__(self, obs: Any) -> np.ndarray:
        x = torch.as_tensor(self.normalize(obs), device=self.module.device)
        action = self.module.act(x, deterministic=self.deterministic).cpu().numpy()
        if self._low is not None:
            action = np.clip(action, self._low, self._high)
        return action


def _run_checkpoints(ckdir: Path) -> list[Path]:
    """A checkpoint directory's checkpoints, newest first: ``last.ckpt``, then the periodic ones by clock."""
    last = ckdir / "last.ckpt"
    periodic = sorted(ckdir.glob("[a-z]*-[0-9]*.ckpt"), reverse=True)  # frames-…, steps-…: one unit per run
    return ([last] if last.is_file() else []) + periodic


def _no_checkpoint(target: str | Path, path: Path) -> LrlError:
    if (path / "recipe.yaml").is_file():  # the launcher writes it before training: the run died before a checkpoint
        from lrl.errors import RunStateError

        return RunStateError(f"{target} has no checkpoint: the run stopped before its first one (killed?); start it "
                             f"again with lrl train {path / 'recipe.yaml'} --run-dir {target}")
    return LrlError(f"no checkpoint in '{target}' (expected checkpoints/last.ckpt); is it an lrl run directory?")


def resolve_checkpoint(target: str | Path) -> Path:
    """A run directory (→ its ``checkpoints/last.ckpt``, else the latest periodic one) or a ``.ckpt`` file."""
    path = Path(target)
    if path.is_dir():
        ckdir = path / "checkpoints" if (path / "checkpoints").is_dir() else path
        found = _run_checkpoints(ckdir)
        if found:
            return found[0]
        raise _no_checkpoint(target, path)
    if not path.is_file():
        raise LrlError(f"checkpoint '{target}' not found; pass a run directory or a .ckpt file")
    return path


def load_checkpoint(target: str | Path, warn: bool = True) -> tuple[Path, dict[str, Any]]:
    """:func:`resolve_checkpoint` and :func:`read_checkpoint`, falling back from an unreadable checkpoint of a run
    directory (a truncated ``last.ckpt``: a full disk, a copy cut short) to the newest readable periodic one, with
    one warning line naming both. A ``.ckpt`` file named explicitly gets no fallback."""
    first = resolve_checkpoint(target)
    try:
        return first, read_checkpoint(first)
    except LrlError as err:
        if not Path(target).is_dir():
            raise
        for other in _run_checkpoints(first.parent)[1:]:
            try:
                ckpt = read_checkpoint(other)
            except LrlError:
                continue
            if warn:
                logging.getLogger("lrl").warning("%s is unreadable or corrupt; using %s, the newest readable "
                                                 "checkpoint, instead", first, other)
            return other, ckpt
        raise err from None


def read_checkpoint(path: Path) -> dict[str, Any]:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, EOFError, RuntimeError, zipfile.BadZipFile, ValueError, OSError) as err:
        raise LrlError(f"checkpoint '{path}' is unreadable or corrupt ({type(err).__name__}); "
                       "use another checkpoint of the run (checkpoints/<unit>-*.ckpt)") from None
    if not isinstance(ckpt, dict) or "lrl" not in ckpt:
        raise LrlError(f"'{path}' is not an lrl checkpoint (no run information in it)")
    return ckpt


def _obs_stats(ckpt: dict[str, Any]) -> dict[str, Any] | None:
    for key, value in ckpt.items():
        if isinstance(value, dict) and "ranks" in value and key.endswith("DataModule"):
            coll = value["ranks"][0].get("collector") or {}
            norm = coll.get("obs_normalizer")
            if norm is None:
                return None
            shared, pending = norm["shared"], norm["pending"]
            from lrl.data.normalize import RunningMeanStd

            stats = RunningMeanStd(np.shape(shared["mean"]))
            stats.load_state_dict(shared)
            stats.update_moments(np.asarray(pending["mean"]), np.asarray(pending["var"]), float(pending["count"]))
            return {"mean": stats.mean, "var": stats.var}
    return None


def policy_from_checkpoint(ckpt: dict[str, Any], deterministic: bool = True, device: str = "cpu") -> Policy:
    from lrl.recipe import validate
    from lrl.recipe.registry import algorithm_class

    recipe = validate(ckpt["lrl"]["recipe"], source="checkpoint recipe")
    algo = algo_arguments(recipe.algo)
    info = ckpt["lrl"]
    spec = spec_from_dict(info["spec"] if "spec" in info else info["env_spec"])  # "env_spec": before Contract v2
    if "compile" in algo:
        algo["compile"] = False  # evaluation needs no compiled update
    module = algorithm_class(recipe.algo["name"])(spec, **algo)
    module.load_state_dict(ckpt["state_dict"])
    module.to(device)
    clip_obs = recipe.env.clip_obs if recipe.env is not None else 10.0
    return Policy(module, _obs_stats(ckpt), clip_obs, deterministic)


def load_policy(target: str | Path, deterministic: bool = True, device: str = "cpu") -> Policy:
    """The trained policy of a run directory or checkpoint, as a numpy-in, numpy-out callable."""
    return policy_from_checkpoint(load_checkpoint(target)[1], deterministic, device)


SUCCESS_KEYS = ("success", "is_success")  # PointMaze / AntMaze; Fetch, Shadow hand (gymnasium-robotics)


def info_success(info: dict[str, Any]) -> bool | None:
    """The success flag of one env's ``info`` (``success`` or ``is_success``), or None when it reports none."""
    for key in SUCCESS_KEYS:
        if key in info:
            return bool(np.asarray(info[key]).any())
    return None


def final_success(info: dict[str, Any], n: int) -> tuple[np.ndarray, np.ndarray]:
    """(success, reported) of the ``n`` sub-envs of a gymnasium 1.x vector env whose episodes ended at this step.

    Under ``autoreset_mode=SAME_STEP`` an ending sub-env is reset within the same step: the top-level info is the new
    episode's reset info, and the ending step's own info is in ``info["final_info"]`` (a dict of per-env arrays, each
    key ``k`` with its mask ``_k``), with ``info["_final_info"]`` marking which sub-envs ended."""
    success, reported = np.zeros(n, bool), np.zeros(n, bool)
    final = info.get("final_info")
    if not isinstance(final, dict):
        return success, reported
    ended = np.asarray(info.get("_final_info", np.ones(n, bool)), bool)
    for key in SUCCESS_KEYS:
        if key in final:
            mask = ended & np.asarray(final.get(f"_{key}", np.ones(n, bool)), bool)
            success[mask] = np.asarray(final[key], bool)[mask]
            reported |= mask
    return success, reported


def evaluate(policy: Callable[[np.ndarray], np.ndarray], env_cfg: EnvConfig, episodes: int, seed: int,
             video_dir: Path | None = None, wave: int = 16) -> dict[str, Any]:
    """Run ``episodes`` full episodes (seeds ``seed + i``); returns mean/std/min/max return and lengths, and where the
    env reports success at the episodes' ends, ``success_rate`` (over the episodes that reported it)."""
    returns: list[float] = []
    lengths: list[int] = []
    successes: list[bool] = []
    for start in range(0, episodes, wave):
        n = min(wave, episodes - start)
        env = gym.vector.SyncVectorEnv([env_fn(env_cfg) for _ in range(n)],
                                       autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
        obs, _ = env.reset(seed=[seed + start + i for i in range(n)])
        ret, length = np.zeros(n), np.zeros(n, np.int64)
        running = np.ones(n, bool)
        while running.any():
            obs, reward, term, trunc, info = env.step(policy(obs))
            ret += reward * running
            length += running
            ended = running & (term | trunc)
            if ended.any():
                success, reported = final_success(info, n)
                successes += success[ended & reported].tolist()
            running &= ~(term | trunc)
        env.close()
        returns += ret.tolist()
        lengths += length.tolist()
    if video_dir is not None:
        from lrl.video import record_video

        record_video(policy, env_cfg, seed, Path(video_dir))
    arr = np.asarray(returns)
    out = {"return_mean": float(arr.mean()), "return_std": float(arr.std()), "return_min": float(arr.min()),
           "return_max": float(arr.max()), "length_mean": float(np.mean(lengths)), "episodes": episodes,
           "seed": seed, "returns": [float(r) for r in returns]}
    if successes:
        out["success_rate"] = float(np.mean(successes))
    return out
