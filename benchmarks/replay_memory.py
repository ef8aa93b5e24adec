"""Replay memory per stored transition: lrl's replay buffer next to Stable-Baselines3's ``ReplayBuffer``.

Four environments, each through its lrl recipe: CartPole-v1 (dqn/cartpole, discrete), Pendulum-v1 (sac/pendulum),
HalfCheetah-v5 (sac/halfcheetah, MuJoCo, 17-dim observations) and Atari Pong (dqn/pong: ALE/Pong-v5 in the standard
preprocessing, 4×84×84 uint8 frame stacks). Every buffer holds ``--n`` transitions (capacity = ``--n``) of the same
real rollouts (uniformly random actions, lrl's collector), and its size is measured, not computed: the bytes of
every tensor / array of its storage, divided by its capacity.

* ``lrl`` — the replay DataModule's own buffer (``ReplayDataModule._make_buffer``: a TorchRL ``ReplayBuffer`` over
  ``LazyTensorStorage``) filled the way ``ReplayDataModule._collect`` fills it: ``KEYS`` of each rollout, or, for
  frame-stacked images, :class:`lrl.data.frames.FrameReplay` (each frame stored once). For Pong the plain buffer
  (whole stacks, as without ``FrameReplay``) is recorded too, as in ``benchmarks/atari_memory.py``.
* ``sb3`` — ``stable_baselines3.common.buffers.ReplayBuffer`` with its defaults (``handle_timeout_termination=True``),
  on the env's own spaces: arrays ``observations``, ``next_observations``, ``actions``, ``rewards``, ``dones``,
  ``timeouts``.
* ``sb3_optimize_memory_usage`` — the same with ``optimize_memory_usage=True`` (no ``next_observations``: the next
  observation is read from the next slot); SB3 refuses it together with ``handle_timeout_termination``, so this
  variant has ``handle_timeout_termination=False`` (truncations are learned as terminations).

Writes ``benchmarks/results/replay-memory.json`` (with each storage's fields: dtype, shape and bytes per transition)
and ``benchmarks/results/replay-memory.png``.

    LRL_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/replay_memory.py     # ~15 s
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from atari_memory import storage_bytes  # noqa: E402

ENVS = {  # label -> lrl recipe
    "CartPole-v1": "dqn/cartpole",
    "Pendulum-v1": "sac/pendulum",
    "HalfCheetah-v5": "sac/halfcheetah",
    "Pong (ALE/Pong-v5, 4x84x84)": "dqn/pong",
}
BARS = {"lrl": "lrl", "sb3": "SB3 ReplayBuffer", "sb3_optimize_memory_usage": "SB3 optimize_memory_usage=True"}
SB3_ARRAYS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def _key(k: str | tuple[str, ...]) -> str:
    return "/".join(k) if isinstance(k, tuple) else k


def lrl_fields(storage: Any, capacity: int) -> dict[str, dict[str, Any]]:
    """dtype, per-transition shape and bytes per transition of each tensor of a TorchRL storage."""
    data = storage._storage  # TorchRL's TensorDict of all slots
    return {_key(k): {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape[1:]),
                      "bytes": t.numel() * t.element_size() / capacity}
            for k, t in data.items(include_nested=True, leaves_only=True)}


def sb3_fields(buf: Any, capacity: int) -> dict[str, dict[str, Any]]:
    """The same for SB3's arrays (``[buffer_size, n_envs, ...]``); absent ones are left out."""
    out = {}
    for name in SB3_ARRAYS:
        a = getattr(buf, name, None)
        if isinstance(a, np.ndarray):
            out[name] = {"dtype": str(a.dtype), "shape": list(a.shape[2:]), "bytes": a.nbytes / capacity}
    return out


def measure(recipe_name: str, n: int, steps_per_env: int) -> dict[str, Any]:
    """Fill lrl's buffer and both SB3 buffers with the same ``n`` transitions; bytes per transition of each."""
    from stable_baselines3.common.buffers import ReplayBuffer as SB3Buffer
    from torchrl.data import LazyTensorStorage, ReplayBuffer

    from lrl.contract import Schedule
    from lrl.data.collector import make_collector
    from lrl.data.env import make_vec_env, probe_env_spec
    from lrl.data.frames import FrameReplay
    from lrl.data.replay import KEYS, ReplayDataModule, UniformPolicy
    from lrl.recipe import load

    recipe = load(recipe_name, [f"data.buffer_size={n}"])
    cfg = recipe.env
    assert cfg is not None
    num_envs = cfg.num_envs
    if n % (num_envs * steps_per_env):
        raise SystemExit(f"--n={n} must be a multiple of num_envs × --steps={num_envs * steps_per_env}")
    spec = probe_env_spec(cfg)
    args = {k: v for k, v in recipe.data.items() if k != "name"}
    dm = ReplayDataModule(env=cfg, spec=spec, seed=recipe.seed, budget=recipe.budget.frames or n,
                          clock_unit="frames", schedule=Schedule(), **args)
    cpu = torch.device("cpu")
    venv = make_vec_env(cfg, num_envs)
    obs_space, act_space = venv.single_observation_space, venv.single_action_space
    collector = make_collector("lean", venv, spec, UniformPolicy(spec), steps_per_env=steps_per_env,
                               env_seeds=[recipe.seed + i for i in range(num_envs)], device=cpu)
    buffer = dm._make_buffer(cpu)  # the DataModule's own: LazyTensorStorage(buffer_size), host sampler
    frames = FrameReplay(buffer, num_envs, cfg.atari.frame_stack, torch.Generator()) \
        if dm.shares_frames and cfg.atari is not None else None
    plain = ReplayBuffer(storage=LazyTensorStorage(n)) if frames is not None else None
    sb3 = SB3Buffer(n, obs_space, act_space, device="cpu", n_envs=num_envs)
    sb3_opt = SB3Buffer(n, obs_space, act_space, device="cpu", n_envs=num_envs, optimize_memory_usage=True,
                        handle_timeout_termination=False)  # SB3 refuses both at once
    for _ in range(n // (num_envs * steps_per_env)):
        td = collector.rollout()  # [num_envs, steps]
        if frames is not None:  # as ReplayDataModule._collect
            frames.extend(td)
            assert plain is not None
            plain.extend(td.reshape(-1).select(*KEYS))
        else:
            buffer.extend(td.reshape(-1).select(*KEYS))
        for t in range(steps_per_env):
            step = td[:, t]
            term, trunc = step["next", "terminated"].squeeze(-1).numpy(), step["next", "truncated"].squeeze(-1).numpy()
            infos = [{"TimeLimit.truncated": bool(tr and not te)} for te, tr in zip(term, trunc, strict=True)]
            for b in (sb3, sb3_opt):
                b.add(step["observation"].numpy(), step["next", "observation"].numpy(), step["action"].numpy(),
                      step["next", "reward"].squeeze(-1).numpy(), (term | trunc).astype(np.float32), infos)
    collector.shutdown()
    assert len(buffer) == n and sb3.full and sb3_opt.full
    assert getattr(sb3_opt, "next_observations", None) is None  # optimize_memory_usage: observations stored once
    fields = {"lrl": lrl_fields(buffer.storage, n), "sb3": sb3_fields(sb3, n),
              "sb3_optimize_memory_usage": sb3_fields(sb3_opt, n)}
    bytes_per = {"lrl": storage_bytes(buffer) / n,
                 **{k: sum(a.nbytes for a in (getattr(b, x, None) for x in SB3_ARRAYS) if isinstance(a, np.ndarray))
                    / n for k, b in (("sb3", sb3), ("sb3_optimize_memory_usage", sb3_opt))}}
    for k, v in bytes_per.items():
        assert abs(v - sum(f["bytes"] for f in fields[k].values())) < 1e-9, k
    out: dict[str, Any] = {
        "recipe": recipe_name, "env_id": cfg.id, "num_envs": num_envs,
        "obs_space": str(obs_space), "action_space": str(act_space),
        "lrl_storage": "FrameReplay (each frame once)" if frames is not None else "KEYS (observation and next)",
        "bytes_per_transition": bytes_per, "fields": fields,
    }
    if plain is not None:
        out["bytes_per_transition"]["lrl_plain"] = storage_bytes(plain) / n
        out["fields"]["lrl_plain"] = lrl_fields(plain.storage, n)
    return out


def plot(results: dict[str, dict[str, Any]], n: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9.0, 4.8))
    x = np.arange(len(results))
    width = 0.8 / len(BARS)
    for i, (key, label) in enumerate(BARS.items()):
        vals = [r["bytes_per_transition"].get(key, np.nan) for r in results.values()]
        bars = ax.bar(x + (i - (len(BARS) - 1) / 2) * width, vals, width, label=label)
        ax.bar_label(bars, labels=[f"{v:,.0f}" for v in vals], fontsize=7, padding=2)
    ax.set_xticks(x, list(results))
    ax.set_yscale("log")
    ax.set_ylabel("bytes per transition (storage / capacity)")
    ax.set_title(f"Replay memory per transition (capacity {n:,}, measured after filling)")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8)
    top = max(max(r["bytes_per_transition"].values()) for r in results.values())
    ax.set_ylim(top=top * 3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="transitions stored = capacity of every buffer")
    ap.add_argument("--steps", type=int, default=100, help="steps per env per collector rollout")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("LRL_NUM_THREADS", "1")))
    results: dict[str, dict[str, Any]] = {}
    for label, recipe_name in ENVS.items():
        results[label] = measure(recipe_name, args.n, args.steps)
        row = results[label]["bytes_per_transition"]
        print(f"{label:30s} " + "  ".join(f"{k} {v:,.1f}" for k, v in row.items()), flush=True)
    import stable_baselines3
    import torchrl

    args.out.mkdir(parents=True, exist_ok=True)
    record = {
        "n": args.n, "capacity": args.n, "unit": "bytes per transition: sum of the storage's tensor/array nbytes "
        "after filling with n real transitions (random actions), divided by the capacity",
        "notes": {
            "lrl": "ReplayDataModule's buffer (TorchRL ReplayBuffer, LazyTensorStorage); vector observations as "
                   "float32, terminated/truncated/done as bool; Pong through FrameReplay (lrl_plain: whole stacks)",
            "sb3": "stable_baselines3.common.buffers.ReplayBuffer(capacity, env spaces, device='cpu') with "
                   "handle_timeout_termination=True (the default); observations in the space's dtype",
            "sb3_optimize_memory_usage": "optimize_memory_usage=True with handle_timeout_termination=False (SB3 "
                                         "refuses both together): no next_observations array, truncations "
                                         "treated as terminations; the timeouts array is still allocated",
        },
        "envs": results, "versions": {"stable_baselines3": stable_baselines3.__version__,
                                      "torchrl": torchrl.__version__, "torch": torch.__version__},
    }
    (args.out / "replay-memory.json").write_text(json.dumps(record, indent=1) + "\n")
    plot(results, args.n, args.out / "replay-memory.png")
    print(f"wrote {args.out / 'replay-memory.json'} and {args.out / 'replay-memory.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
