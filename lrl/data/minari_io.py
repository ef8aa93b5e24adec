"""Minari datasets in and out: any Minari dataset (lrl-made or not) as flat transition tensors, and lrl's
demonstrations written as a standard Minari dataset (https://minari.farama.org).

The public names are re-exported by :mod:`lrl.data.demos` (the Minari I/O API others code against); they live
here, apart from the ``demos`` data source, so that ``data.streams`` of every source (:mod:`lrl.data.ranked`) can
read a Minari dataset without an import cycle.

Where a dataset is: a ``ref`` is a dataset id in the local Minari store (``$MINARI_DATASETS_PATH``, by default
``~/.minari/datasets``; the dataset lives in ``<store>/<id>/data``), or the path of a dataset directory (the one
holding ``data/``, or ``data/`` itself). Nothing is ever downloaded.

The spec comes from the dataset's metadata alone (``observation_space`` and ``action_space``, stored by Minari in
``data/metadata.json``): reading a dataset never builds its environment, so a dataset recorded in an env that is
not installed here still trains (the env is needed only to evaluate). The spec's id is the recording env's id when
the metadata names one, else the dataset id.

Flat tensors (TorchRL's key names, as :mod:`lrl.data.dataset` uses): ``observation``, ``action``,
``next/observation``, ``next/reward`` (float32 [N]), ``next/terminated``, ``next/truncated``, ``next/done`` (bool
[N]), ``episode`` (the Minari episode id) and ``step`` (t within the episode), both int64. A goal observation's parts
are the flat keys ``observation``, ``desired_goal``, ``achieved_goal`` and the same under ``next/``. Observations and
continuous actions are float32, discrete actions int64 [N].
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lrl.errors import RecipeError
from lrl.spec import GOAL_KEYS, Spec, spec_from_spaces

# Minari's id grammar, ``(namespace/)name-v<version>`` (minari.dataset.minari_dataset.DATASET_ID_RE); the version is
# required in practice: Minari's own listing parses it as an integer.
DATASET_ID = re.compile(r"^(?:[-_\w][-_\w/]*[-_\w]+/)?[-_\w]+?-v\d+$")
NAMESPACE_METADATA = "namespace_metadata.json"  # what Minari writes in each namespace directory


def minari_store() -> Path:
    """The local Minari store: ``$MINARI_DATASETS_PATH`` or ``~/.minari/datasets`` (Minari's own rule)."""
    env = os.environ.get("MINARI_DATASETS_PATH")
    return Path(env) if env else Path.home() / ".minari" / "datasets"


@dataclass(frozen=True)
class MinariInfo:
    """What a dataset's metadata says, without reading its episodes."""

    data_dir: Path  # the directory holding metadata.json and the episodes
    spec: Spec
    env_id: str | None  # the env it was recorded in, when the metadata names one
    total_steps: int  # transitions
    total_episodes: int
    metadata: dict[str, Any]


def _data_dir(ref: str, what: str) -> Path:
    path = Path(ref).expanduser()
    if path.is_dir():
        for candidate in (path / "data", path):
            if (candidate / "metadata.json").is_file():
                return candidate
        raise RecipeError(f"{what}={ref}: the directory holds no Minari dataset (no data/metadata.json)")
    store = minari_store()
    if (store / ref / "data" / "metadata.json").is_file():
        return store / ref / "data"
    raise RecipeError(f"{what}={ref}: no Minari dataset of that id in {store} and no such directory; record one with "
                      f"`lrl demos EXPERT --out ID` or give the dataset's directory (nothing is downloaded)")


def minari_info(ref: str, what: str = "data.dataset") -> MinariInfo:
    """The dataset's metadata and spec (reads ``metadata.json`` only); anything wrong is one line naming it."""
    from minari import supported_dataset_versions
    from minari.serialization import deserialize_space

    data_dir = _data_dir(ref, what)
    try:
        meta = json.loads((data_dir / "metadata.json").read_text())
    except (OSError, ValueError) as err:
        raise RecipeError(f"{what}={ref}: unreadable Minari metadata ({type(err).__name__})") from None
    if not isinstance(meta, dict):
        raise RecipeError(f"{what}={ref}: unreadable Minari metadata (not a mapping)")
    version = meta.get("minari_version")
    if version not in supported_dataset_versions:
        raise RecipeError(f"{what}={ref}: written by Minari {version}, which the installed Minari cannot read "
                          f"(it reads {', '.join(sorted(supported_dataset_versions))})")
    if "observation_space" not in meta or "action_space" not in meta:
        raise RecipeError(f"{what}={ref}: its metadata stores no observation/action space (a dataset of Minari "
                          "before 0.4); re-create it with a current Minari")
    env_id = None
    if meta.get("env_spec"):
        try:
            env_id = json.loads(meta["env_spec"]).get("id")
        except (ValueError, AttributeError, TypeError):
            env_id = None  # an env spec Minari itself could not recover: the data are still readable
    try:
        obs_space = deserialize_space(meta["observation_space"])
        act_space = deserialize_space(meta["action_space"])
    except Exception as err:  # a space type this Minari or gymnasium does not know
        raise RecipeError(f"{what}={ref}: its spaces cannot be read ({type(err).__name__}: {err})") from None
    start = int(getattr(act_space, "start", 0))
    if start != 0:
        raise RecipeError(f"{what}={ref}: Discrete actions starting at {start} are not supported (lrl's discrete "
                          "actions are 0..n-1)")
    try:
        spec = spec_from_spaces(env_id or str(meta.get("dataset_id", ref)), obs_space, act_space)
    except RecipeError as err:
        raise RecipeError(f"{what}={ref}: {err.message}") from None
    return MinariInfo(data_dir, spec, env_id, int(meta.get("total_steps", 0)), int(meta.get("total_episodes", 0)),
                      meta)


def minari_spec(ref: str, what: str = "data.dataset") -> Spec:
    """The spec of a Minari dataset, from its metadata only (no episode is read)."""
    return minari_info(ref, what).spec


def read_minari(ref: str, what: str = "data.dataset") -> tuple[dict[str, torch.Tensor], Spec]:
    """Every transition of a Minari dataset as flat tensors (see the module docstring), and its spec."""
    info = minari_info(ref, what)
    return _transitions(ref, what, info, None), info.spec


def read_minari_first(ref: str, what: str = "data.dataset", max_samples: int | None = None) -> dict[str, torch.Tensor]:
    """The first ``max_samples`` transitions in episode order (all when None); reads only the episodes needed."""
    return _transitions(ref, what, minari_info(ref, what), max_samples)


def _transitions(ref: str, what: str, info: MinariInfo, limit: int | None) -> dict[str, torch.Tensor]:
    from minari import MinariDataset

    try:
        dataset = MinariDataset(info.data_dir)
    except Exception as err:  # Minari's own checks (assertions, missing files): one line, not its traceback
        first = (str(err).splitlines() or [""])[0]
        raise RecipeError(f"{what}={ref}: not readable as a Minari dataset ({type(err).__name__}: {first})") from None
    spec = info.spec
    parts: dict[str, list[np.ndarray]] = {}
    count = 0
    for ep in dataset.iterate_episodes():
        flat = _flatten_episode(ep.observations, ep.actions, ep.rewards, ep.terminations, ep.truncations, spec,
                                f"{what}={ref}: episode {ep.id}")
        if not flat:
            continue
        n = len(flat["next/reward"])
        flat["episode"] = np.full(n, int(ep.id), np.int64)
        flat["step"] = np.arange(n, dtype=np.int64)
        for k, v in flat.items():
            parts.setdefault(k, []).append(v)
        count += n
        if limit is not None and count >= limit:
            break
    if not count:
        raise RecipeError(f"{what}={ref}: the dataset holds no transitions")
    keep = count if limit is None else min(limit, count)
    return {k: torch.from_numpy(np.concatenate(v)[:keep]) for k, v in parts.items()}


def _flatten_episode(observations: Any, actions: Any, rewards: Any, terminations: Any, truncations: Any, spec: Spec,
                     what: str) -> dict[str, np.ndarray]:
    """One episode (``T+1`` observations, ``T`` of everything else) as flat transition arrays; {} when empty."""
    rewards = np.asarray(rewards, np.float32).reshape(-1)
    t = len(rewards)
    if t == 0:
        return {}
    out: dict[str, np.ndarray] = {}
    if spec.obs_kind == "goal":
        if not isinstance(observations, dict) or not set(GOAL_KEYS) <= set(observations):
            raise RecipeError(f"{what}: observations are not a dict with {', '.join(GOAL_KEYS)}")
        shapes = {"observation": spec.obs_shape, "desired_goal": spec.goal_shape, "achieved_goal": spec.goal_shape}
        for key in GOAL_KEYS:
            obs = _rows(observations[key], t + 1, shapes[key] or (), np.float32, f"{what}: observations.{key}")
            out[key], out[f"next/{key}"] = obs[:-1], obs[1:]
    else:
        obs = _rows(observations, t + 1, spec.obs_shape, np.float32, f"{what}: observations")
        out["observation"], out["next/observation"] = obs[:-1], obs[1:]
    if spec.action_kind == "discrete":
        out["action"] = _rows(actions, t, (), np.int64, f"{what}: actions")
    else:
        out["action"] = _rows(actions, t, (spec.action_dim,), np.float32, f"{what}: actions")
    out["next/reward"] = rewards
    term = _rows(terminations, t, (), np.bool_, f"{what}: terminations")
    trunc = _rows(truncations, t, (), np.bool_, f"{what}: truncations")
    out["next/terminated"], out["next/truncated"], out["next/done"] = term, trunc, term | trunc
    return out


def _rows(x: Any, n: int, shape: tuple[int, ...], dtype: Any, what: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.shape[:1] != (n,) or int(np.prod(arr.shape[1:], dtype=np.int64)) != int(np.prod(shape, dtype=np.int64)):
        raise RecipeError(f"{what}: shape {arr.shape}, expected {(n, *shape)}")
    return np.ascontiguousarray(arr.reshape((n, *shape)).astype(dtype, copy=False))


# --- writing ------------------------------------------------------------------------------------------------------
def check_dataset_id(dataset_id: str, store: str | Path | None = None, what: str = "--out") -> Path:
    """The directory a new dataset ``dataset_id`` would take; one line if the id is malformed or taken."""
    if not DATASET_ID.match(dataset_id):
        raise RecipeError(f"{what}={dataset_id}: not a Minari dataset id; write (namespace/)name-v<version>, e.g. "
                          "cartpole/expert-v0")
    root = Path(store).expanduser() if store is not None else minari_store()
    target = root / dataset_id
    if target.exists():
        raise RecipeError(f"{what}={dataset_id}: a dataset of that id already exists in {root}; pick another id (e.g. "
                          f"a higher -v version) or delete it (minari delete {dataset_id}, or remove {target})")
    return target


def _spaces_from_spec(spec: Spec) -> tuple[Any, Any]:
    """Spaces that describe ``spec`` (unbounded float32 observations) for a dataset recorded without an env id."""
    import gymnasium as gym

    def box(shape: tuple[int, ...]) -> gym.spaces.Box:
        return gym.spaces.Box(-np.inf, np.inf, shape, np.float32)

    obs: gym.Space[Any] = box(spec.obs_shape)
    if spec.obs_kind == "goal":
        goal = spec.goal_shape or ()
        obs = gym.spaces.Dict({"observation": obs, "desired_goal": box(goal), "achieved_goal": box(goal)})
    elif spec.obs_kind != "box":
        raise ValueError(f"write_minari: {spec.obs_kind} observations cannot be written as a Minari dataset")
    if spec.action_kind == "discrete":
        return obs, gym.spaces.Discrete(spec.action_dim)
    if spec.action_kind == "continuous" and spec.action_low is not None and spec.action_high is not None:
        return obs, gym.spaces.Box(np.asarray(spec.action_low, np.float32), np.asarray(spec.action_high, np.float32),
                                   (spec.action_dim,), np.float32)
    raise ValueError(f"write_minari: {spec.action_kind} actions cannot be written as a Minari dataset")


def _env_spaces(env_id: str, env_kwargs: dict[str, Any], max_episode_steps: int | None,
                spec: Spec) -> tuple[Any, Any, Any]:
    """The recording env's spaces and ``EnvSpec`` (kwargs and time limit included), checked against ``spec``."""
    import gymnasium as gym

    try:
        env = gym.make(env_id, max_episode_steps=max_episode_steps, **env_kwargs)
    except Exception as err:  # an env's constructor can fail any way
        raise RecipeError(f"env {env_id}: cannot be built ({type(err).__name__}: {err})") from None
    try:
        there = spec_from_spaces(env_id, env.observation_space, env.action_space)
        fields = ("obs_kind", "obs_shape", "goal_shape", "action_kind", "action_dim")
        if any(getattr(there, f) != getattr(spec, f) for f in fields):
            raise RecipeError(f"env {env_id}: its spaces ({there}) do not describe the episodes' spec ({spec})")
        return env.observation_space, env.action_space, env.spec
    finally:
        env.close()


def write_minari(dataset_id: str, episodes: list[dict[str, Any]], *, spec: Spec, env_id: str | None,
                 env_kwargs: dict[str, Any] | None = None, store: str | Path | None = None,
                 algorithm_name: str = "lrl", ref_min_score: float | None = None, ref_max_score: float | None = None,
                 description: str = "", max_episode_steps: int | None = None) -> Path:
    """Write ``episodes`` as the Minari dataset ``dataset_id`` into ``store`` (default: the local Minari store).

    Each episode is ``{"observations": [T+1, ...] (a dict of such arrays for goal observations), "actions": [T, ...],
    "rewards", "terminations", "truncations": [T]}`` (an optional ``"seed"`` goes into Minari's episode metadata).
    With ``env_id`` the dataset records that env's spaces and spec (``env_kwargs``, ``max_episode_steps``), so
    ``MinariDataset.recover_environment()`` rebuilds it; without, spaces come from ``spec``.

    Atomic: everything is written into a hidden temporary directory of the store (Minari's listing skips hidden
    directories) and renamed into place at the end, so a crash or Ctrl-C leaves no dataset; an existing id is
    refused with one line. Returns the dataset directory (``<store>/<id>``).
    """
    from minari.data_collector.episode_buffer import EpisodeBuffer
    from minari.dataset.minari_storage import MinariStorage

    target = check_dataset_id(dataset_id, store, "dataset id")
    if not episodes:
        raise ValueError("write_minari: no episodes to write")
    buffers = []
    for i, ep in enumerate(episodes):
        flat = _flatten_episode(ep["observations"], ep["actions"], ep["rewards"], ep["terminations"],
                                ep["truncations"], spec, f"write_minari: episode {i}")  # checks every shape
        if not flat:
            raise ValueError(f"write_minari: episode {i} has no steps")
        buffers.append(EpisodeBuffer(
            seed=ep.get("seed"), observations=_as_arrays(ep["observations"]), actions=np.asarray(ep["actions"]),
            rewards=np.asarray(ep["rewards"], np.float64), terminations=np.asarray(ep["terminations"], np.bool_),
            truncations=np.asarray(ep["truncations"], np.bool_), infos={}))  # Minari expects a dict
    if env_id is not None:
        obs_space, act_space, env_spec = _env_spaces(env_id, dict(env_kwargs or {}), max_episode_steps, spec)
    else:
        (obs_space, act_space), env_spec = _spaces_from_spec(spec), None

    root = Path(store).expanduser() if store is not None else minari_store()
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".lrl-writing-{uuid.uuid4().hex}"
    made: list[Path] = []  # namespace directories this call creates, removed again if it fails
    try:
        tmp.mkdir()
        storage = MinariStorage.new(tmp / "data", observation_space=obs_space, action_space=act_space,
                                    env_spec=env_spec, data_format="hdf5", jpeg_encoding=False)
        from minari import __version__

        meta: dict[str, Any] = {"dataset_id": dataset_id, "algorithm_name": algorithm_name,
                                "description": description, "minari_version": __version__}
        if ref_min_score is not None and ref_max_score is not None:  # Minari keeps them only as a pair
            meta.update(ref_min_score=float(ref_min_score), ref_max_score=float(ref_max_score))
        storage.update_metadata(meta)
        storage.update_episodes(buffers)
        for rel in reversed(target.relative_to(root).parents[:-1]):  # the namespaces, outermost first
            parent = root / rel
            if not parent.exists():
                parent.mkdir()
                made.append(parent)
            if not (parent / NAMESPACE_METADATA).exists():
                (parent / NAMESPACE_METADATA).write_text("{}")
        try:
            os.rename(tmp, target)  # refuses a non-empty target: a dataset that appeared meanwhile is kept
        except OSError:
            raise RecipeError(f"dataset id {dataset_id}: {target} appeared while writing; pick another id") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for parent in reversed(made):  # only if still empty but for what this call wrote
            (parent / NAMESPACE_METADATA).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                parent.rmdir()
        raise
    return target


def _as_arrays(obs: Any) -> Any:
    return {k: np.asarray(v) for k, v in obs.items()} if isinstance(obs, dict) else np.asarray(obs)
