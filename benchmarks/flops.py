"""How close an off-policy update runs to the CPU's arithmetic ceiling: achieved FLOP/s against ``torch.matmul``.

For each recipe (default ``sac/pendulum`` and ``td3/pendulum``: batch 256, 256x256 networks, one update per frame)
this builds lrl's module from the recipe, runs its real ``training_step`` (plus, for automatic optimisation, the
backward pass, the Adam step and the module's ``optimizer_step`` hook, as Lightning would) on a fixed replay batch
outside a Trainer, and reports:

* matrix-multiply FLOPs per update, counted by ``torch.utils.flop_counter.FlopCounterMode`` (matmul, addmm, bmm,
  baddbmm: the arithmetic that dominates; element-wise ops are not counted), for lrl and for SB3's ``train(1)`` on
  the same sizes (SB3's actor loss also back-propagates into the critics' weights, which lrl does not);
* ms per update (median of rounds, interleaved) and the achieved GFLOP/s = FLOPs / time;
* the ceiling: ``torch.matmul`` GFLOP/s on the update's own shape (256x256 by 256x256) and on a large square
  product, on the same threads, in the same process.

    python benchmarks/flops.py                       # both recipes, one thread (LRL_NUM_THREADS to change)
    python benchmarks/flops.py sac/pendulum --json-out benchmarks/results/flops.json
    python benchmarks/flops.py --precision bf16-mixed  # lrl under CPU bf16 autocast (worth it with AVX512-BF16/AMX)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode


def ms_per_call(fn: Callable[[], object], n: int) -> float:
    """Mean milliseconds per call of ``fn`` over ``n`` calls."""
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e3


def matmul_gflops(size: int, rounds: int, dtype: torch.dtype = torch.float32) -> float:
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    n = max(1, int(2e9 / (2 * size**3)))  # ~2 GFLOP per timing
    times = [ms_per_call(lambda: torch.matmul(a, b), n) for _ in range(rounds)]
    return 2 * size**3 / (statistics.median(times) * 1e-3) / 1e9


@dataclass
class _Source:
    """The data source as a module sees it during its step (``lrl.contract.DataSource``)."""

    clock_unit: str = "frames"
    clock: int = 10_000
    at_boundary: bool = True
    generator: torch.Generator = field(default_factory=lambda: torch.Generator().manual_seed(0))

    def end_rollout(self) -> None: ...
    def acting_generator(self) -> torch.Generator:
        return self.generator
    def recent_episodes(self) -> list[tuple[float, int]]:
        return []
    def observation_stats(self) -> None:
        return None
    def write_sidecar(self, dirpath: Any) -> None:
        return None


class _LitOpt:
    """What Lightning's ``LightningOptimizer`` gives a module under manual optimisation."""

    def __init__(self, optimizer: torch.optim.Optimizer, trainer: Any) -> None:
        self.optimizer, self.trainer = optimizer, trainer

    def step(self, closure: Any = None) -> Any:
        out = self.optimizer.step(closure)
        self.trainer.global_step += 1
        return out

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)


def lrl_update(recipe_name: str, precision: str = "32-true") -> tuple[Callable[[], None], int, dict[str, Any]]:
    """One update of the recipe's module on a replay batch of its size; returns (update, batch size, recipe info).
    Under ``bf16-mixed`` the ``training_step`` runs in CPU bf16 autocast, as Lightning's mixed-precision plugin runs
    it (under automatic optimisation the backward pass and the optimiser step come after it, outside), with the
    optimiser the module picks for that precision."""
    from lrl.contract import Batch
    from lrl.data.env import probe_env_spec
    from lrl.recipe import load
    from lrl.recipe.registry import algorithm_class
    from lrl.recipe.schema import algo_arguments

    recipe = load(recipe_name, [])
    assert recipe.env is not None
    spec = probe_env_spec(recipe.env)
    m = algorithm_class(recipe.algo["name"])(spec, **algo_arguments(recipe.algo))
    batch = int(recipe.data["batch_size"])
    m.trainer = SimpleNamespace(datamodule=_Source(), global_step=0, world_size=1, precision=precision,  # type: ignore[assignment]
                                is_global_zero=True, loggers=[], gradient_clip_val=None)
    built = m.configure_optimizers()
    opts = built if isinstance(built, list) else [built]
    wrapped = [_LitOpt(o, m.trainer) for o in opts]
    m.optimizers = lambda *a, **k: wrapped[0] if len(wrapped) == 1 else wrapped  # type: ignore[method-assign]
    m.manual_backward = lambda loss, *a, **k: loss.backward()  # type: ignore[method-assign]
    m.clip_gradients = lambda opt, gradient_clip_val=None, gradient_clip_algorithm=None: \
        torch.nn.utils.clip_grad_norm_([p for g in opt.optimizer.param_groups for p in g["params"]], gradient_clip_val)  # type: ignore[method-assign]
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(batch, *spec.obs_shape, generator=g)
    action = torch.rand(batch, spec.action_dim, generator=g) * 2 - 1
    from tensordict import TensorDict

    td = TensorDict({"observation": obs, "action": action,
                     "next": {"observation": torch.randn(batch, *spec.obs_shape, generator=g),
                              "reward": torch.randn(batch, 1, generator=g),
                              "terminated": torch.zeros(batch, 1, dtype=torch.bool)}}, [batch])

    mixed = precision == "bf16-mixed"

    def update() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mixed):
            out = m.training_step(iter([(Batch(td, clock=10_000, progress_remaining=0.5, rollout=0, first=False),
                                         0, 0)]))
        if m.automatic_optimization:
            opts[0].zero_grad(set_to_none=True)
            out.backward()
            m.optimizer_step(0, 0, opts[0], lambda: out)
            m.trainer.global_step += 1

    return update, batch, {"algo": recipe.algo["name"], "hidden": recipe.algo.get("hidden")}


def sb3_update(recipe_name: str, batch: int) -> Callable[[], None] | None:
    try:
        import gymnasium as gym
        import stable_baselines3 as sb3
    except ImportError:
        return None
    from lrl.recipe import load

    recipe = load(recipe_name, [])
    cls = {"sac": sb3.SAC, "td3": sb3.TD3}.get(recipe.algo["name"])
    if cls is None:
        return None
    hidden = list(recipe.algo.get("hidden") or [256, 256])
    assert recipe.env is not None
    model = cls("MlpPolicy", gym.make(recipe.env.id), batch_size=batch, learning_starts=batch, device="cpu", seed=0,
                policy_kwargs={"net_arch": hidden})
    model.learn(batch + 10)
    return lambda: model.train(1, batch)


def flops_of(fn: Callable[[], None]) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipes", nargs="*", default=["sac/pendulum", "td3/pendulum"])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--n", type=int, default=20, help="updates per timing")
    parser.add_argument("--precision", choices=["32-true", "bf16-mixed"], default="32-true",
                        help="lrl's trainer.precision (SB3 always runs float32); bf16-mixed also measures a bf16 "
                             "matmul ceiling")
    parser.add_argument("--json-out")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("LRL_NUM_THREADS", "1")))
    rows: list[dict[str, Any]] = []
    ceiling = {f"matmul_{s}": matmul_gflops(s, args.rounds) for s in (256, 2048)}
    mixed = args.precision == "bf16-mixed"
    if mixed:
        ceiling.update({f"matmul_{s}_bf16": matmul_gflops(s, args.rounds, torch.bfloat16) for s in (256, 2048)})
    roof = ceiling["matmul_256_bf16" if mixed else "matmul_256"]
    for name in args.recipes:
        update, batch, info = lrl_update(name, args.precision)
        peer = sb3_update(name, batch)
        for fn in (update, peer):  # warm-up (and TD3's first delayed actor step)
            if fn is not None:
                for _ in range(4):
                    fn()
        # TD3 updates its actor every policy_delay-th update: count FLOPs over a whole cycle
        cycle = 2 if info["algo"] == "td3" else 1
        fl = sum(flops_of(update) for _ in range(cycle)) / cycle
        fl_sb3 = (sum(flops_of(peer) for _ in range(cycle)) / cycle) if peer is not None else None
        t, t_sb3 = [], []
        for _ in range(args.rounds):
            t.append(ms_per_call(update, args.n))
            if peer is not None:
                t_sb3.append(ms_per_call(peer, args.n))
        ms = statistics.median(t)
        row = {"recipe": name, **info, "batch": batch, "mflop_per_update": fl / 1e6, "ms_per_update": ms,
               "gflops": fl / (ms * 1e-3) / 1e9}
        if peer is not None and fl_sb3 is not None:
            ms_sb3 = statistics.median(t_sb3)
            row.update(sb3_mflop_per_update=fl_sb3 / 1e6, sb3_ms_per_update=ms_sb3,
                       sb3_gflops=fl_sb3 / (ms_sb3 * 1e-3) / 1e9)
        rows.append(row)
    out = {"threads": torch.get_num_threads(), "cpu": _cpu_name(), "precision": args.precision,
           "load1": os.getloadavg()[0], "torch": torch.__version__, **{k: round(v, 1) for k, v in ceiling.items()},
           "rows": rows}
    print(f"torch.matmul GFLOP/s ({out['threads']} thread(s), load1 {out['load1']:.2f}): "
          f"256x256 {ceiling['matmul_256']:.1f}, 2048x2048 {ceiling['matmul_2048']:.1f}"
          + (f"; bf16: 256x256 {ceiling['matmul_256_bf16']:.1f}, 2048x2048 {ceiling['matmul_2048_bf16']:.1f}"
             if mixed else ""))
    print(f"lrl runs {args.precision}, SB3 float32")
    print(f"| recipe | MFLOP/update lrl / SB3 | ms/update lrl / SB3 | GFLOP/s lrl / SB3 | lrl / matmul(256"
          f"{', bf16' if mixed else ''}) |")
    print("|---|---|---|---|---|")
    for r in rows:
        sb3 = (f"{r['sb3_mflop_per_update']:.0f}", f"{r['sb3_ms_per_update']:.2f}", f"{r['sb3_gflops']:.1f}") \
            if "sb3_gflops" in r else ("-", "-", "-")
        print(f"| {r['recipe']} | {r['mflop_per_update']:.0f} / {sb3[0]} | {r['ms_per_update']:.2f} / {sb3[1]} | "
              f"{r['gflops']:.1f} / {sb3[2]} | {r['gflops'] / roof:.0%} |")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
