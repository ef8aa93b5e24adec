"""The floor of a DQN update on this machine: the bare eager PyTorch update, no framework, no replay, no env.

``dqn/cartpole`` does 128 updates of a batch of 64 on a 4→256→256→2 ReLU MLP per 256 frames; the issue's target
(≤ 0.6× SB3's wall-clock) fixes how many milliseconds a whole run may spend per update. This script times the update
alone, as ``benchmarks/reference/dqn.py`` writes it (target forward, Huber loss, backward, global norm clip, Adam), on
random data already in tensors, in variants that do less per update than that eager code:

* ``eager``: the reference's update with ``torch.optim.Adam`` (foreach, PyTorch's default on CPU);
* ``eager, fused Adam``: the same with ``Adam(fused=True)`` (what lrl uses);
* ``compiled``: ``torch.compile`` of the loss's forward and of clip + Adam step (fused), eager backward.

Rounds alternate between variants; the medians are printed in ms per update. Compare with what a run may spend
per update: ``train_s`` × target ratio / updates (README).

    LRL_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/update_floor.py [--rounds 7] [--n 200] [--no-compile]
"""

from __future__ import annotations

import argparse
import os
import statistics
from collections.abc import Callable

import torch
import torch.nn.functional as F
from flops import ms_per_call  # run as a script: benchmarks/ is on sys.path
from reference.dqn import _mlp  # the hand-written loop's own network
from torch import nn


def dqn_update(fused: bool, compiled: bool, batch: int = 64, hidden: int = 256, obs_dim: int = 4,
               n_actions: int = 2, seed: int = 0) -> Callable[[], None]:
    """One update closure over fixed random data (the arithmetic of a real one; the data do not matter)."""
    torch.manual_seed(seed)
    q, q_target = (_mlp([obs_dim, hidden, hidden], nn.ReLU, n_actions) for _ in range(2))
    q_target.load_state_dict(q.state_dict())
    q_target.requires_grad_(False)
    opt = torch.optim.Adam(q.parameters(), lr=2.3e-3, fused=fused)
    params = list(q.parameters())
    o, o2 = torch.randn(batch, obs_dim), torch.randn(batch, obs_dim)
    a = torch.randint(0, n_actions, (batch,))
    r, term = torch.ones(batch), torch.zeros(batch)

    def loss_fn() -> torch.Tensor:
        with torch.no_grad():
            y = r + 0.99 * (1.0 - term) * q_target(o2).max(-1).values
        return F.smooth_l1_loss(q(o).gather(-1, a[:, None]).squeeze(-1), y)

    def clip_and_step() -> None:
        nn.utils.clip_grad_norm_(params, 10.0, foreach=True)
        opt.step()

    loss_c = torch.compile(loss_fn) if compiled else loss_fn
    step_c = torch.compile(clip_and_step) if compiled else clip_and_step

    def update() -> None:
        opt.zero_grad(set_to_none=True)
        loss_c().backward()
        step_c()

    return update


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--n", type=int, default=200, help="updates per timing")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("LRL_NUM_THREADS", "1")))
    variants = {"eager": dqn_update(fused=False, compiled=False),
                "eager, fused Adam": dqn_update(fused=True, compiled=False)}
    if not args.no_compile:
        variants["compiled (forward; clip + fused Adam)"] = dqn_update(fused=True, compiled=True)
    for fn in variants.values():  # warm-up, compilation included
        for _ in range(20):
            fn()
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.rounds):
        for k, fn in variants.items():
            times[k].append(ms_per_call(fn, args.n))
    print(f"DQN update, batch 64, 4-256-256-2 MLP, {torch.get_num_threads()} thread(s), "
          f"load1 {os.getloadavg()[0]:.2f}, torch {torch.__version__}")
    for k, v in times.items():
        print(f"  {k:40s} {statistics.median(v):.3f} ms per update (rounds: {min(v):.3f}..{max(v):.3f})")


if __name__ == "__main__":
    main()
