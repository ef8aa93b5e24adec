"""The floor of a DQN and of a PPO update on this machine: the bare eager PyTorch update, no framework, no env.

``dqn/cartpole`` does 128 updates of a batch of 64 on a 4→256→256→2 ReLU MLP per 256 frames (~24.5k in a run);
``ppo/cartpole`` does 20 updates of a batch of 256 on two 4→64→64 tanh MLPs (actor →2, critic →1) per 256 frames
(7,820 in a run). The issue's targets (≤ 0.6× and ≤ 0.5× SB3's wall-clock) fix how many seconds a whole run may
spend; this script times the update alone, as ``benchmarks/reference/{dqn,ppo}.py`` write it, on random data
already in tensors, in variants that do less per update than that eager code:

* ``eager``: the reference's update with ``torch.optim.Adam`` (foreach, PyTorch's default on CPU);
* ``eager, fused Adam``: the same with ``Adam(fused=True)`` (what lrl uses);
* PPO only, ``one stacked actor-critic``: actor and critic evaluated as one network of stacked weights
  (``baddbmm`` over a leading dimension of 2, the value head padded to the policy head's width): half the
  forward and backward kernels of two MLPs, fused Adam;
* ``compiled``: ``torch.compile`` of the loss's forward and of clip + Adam step (fused), eager backward.

Rounds alternate between variants; the medians are printed in ms per update and times the run's updates, the
seconds a run spends in its updates alone before any collection. Compare with the seconds a target allows
(README).

    LRL_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/update_floor.py [--algo dqn|ppo|both] [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from flops import ms_per_call  # run as a script: benchmarks/ is on sys.path
from reference.dqn import _mlp  # the hand-written loops' own networks
from reference.ppo import _mlp as _ppo_mlp
from torch import nn

UPDATES = {"dqn": 24_500, "ppo": 7_820}  # per run of the recipe's budget (dqn/cartpole, ppo/cartpole)


class Update(NamedTuple):
    step: Callable[[], None]  # one whole update: zero, loss, backward, clip, Adam
    loss: Callable[[], torch.Tensor]  # the loss alone, on the same data (tests compare variants with it)


def _update(loss_fn: Callable[[], torch.Tensor], params: list[torch.Tensor], opt: torch.optim.Optimizer,
            max_norm: float, compiled: bool) -> Update:
    """zero, loss, backward, global norm clip, Adam; ``compiled``: the loss and clip + step each compiled."""

    def clip_and_step() -> None:
        nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
        opt.step()

    loss_c = torch.compile(loss_fn) if compiled else loss_fn
    step_c = torch.compile(clip_and_step) if compiled else clip_and_step

    def update() -> None:
        opt.zero_grad(set_to_none=True)
        loss_c().backward()
        step_c()

    return Update(update, loss_c)


def dqn_update(fused: bool, compiled: bool, batch: int = 64, hidden: int = 256, obs_dim: int = 4,
               n_actions: int = 2, seed: int = 0) -> Update:
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

    return _update(loss_fn, params, opt, 10.0, compiled)


def ppo_update(fused: bool, compiled: bool, stacked: bool = False, batch: int = 256, hidden: int = 64,
               obs_dim: int = 4, n_actions: int = 2, clip: float = 0.2, seed: int = 0) -> Update:
    """One PPO minibatch update (clipped surrogate, value loss, entropy, advantage normalisation, norm clip 0.5,
    Adam) over fixed random data; ``stacked``: actor and critic as one network of stacked weights."""
    torch.manual_seed(seed)
    actor = _ppo_mlp([obs_dim, hidden, hidden], nn.Tanh, n_actions, 0.01, True)
    critic = _ppo_mlp([obs_dim, hidden, hidden], nn.Tanh, 1, 1.0, True)
    params: list[torch.Tensor] = [*actor.parameters(), *critic.parameters()]
    o, a = torch.randn(batch, obs_dim), torch.randint(0, n_actions, (batch,))
    old_logp, adv, ret = torch.randn(batch) * 0.1 - 0.7, torch.randn(batch), torch.randn(batch)

    def two_nets(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return actor(x), critic(x).squeeze(-1)

    heads = two_nets
    if stacked:  # the same weights, stacked: layer i of both nets is one baddbmm; the value head padded with zeros
        params = []
        for la, lc in zip(actor, critic, strict=True):
            if not isinstance(la, nn.Linear):
                continue
            pad = la.out_features - lc.out_features  # value head: 1 output → n_actions, zeros beyond the first
            wc, bc = F.pad(lc.weight.detach(), (0, 0, 0, pad)), F.pad(lc.bias.detach(), (0, pad))
            params += [nn.Parameter(torch.stack([la.weight.detach().T, wc.T])),  # [2, in, out]
                       nn.Parameter(torch.stack([la.bias.detach(), bc])[:, None])]  # [2, 1, out]

        def one_net(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            h = x.expand(2, *x.shape)
            for i in range(0, len(params), 2):
                h = torch.baddbmm(params[i + 1], h, params[i])
                if i + 2 < len(params):
                    h = torch.tanh(h)
            return h[0], h[1, :, 0]

        heads = one_net
    opt = torch.optim.Adam(params, lr=1e-3, eps=1e-5, fused=fused)

    def loss_fn() -> torch.Tensor:
        logits, v = heads(o)
        logp_all = torch.log_softmax(logits, -1)
        logp = logp_all.gather(-1, a[:, None]).squeeze(-1)
        entropy = -(logp_all.exp() * logp_all).sum(-1).mean()
        adv_n = (adv - adv.mean()) / (adv.std() + 1e-8)
        ratio = (logp - old_logp).exp()
        pg_loss = -torch.min(adv_n * ratio, adv_n * ratio.clamp(1 - clip, 1 + clip)).mean()
        return pg_loss + 0.5 * (ret - v).pow(2).mean() - 0.0 * entropy

    return _update(loss_fn, params, opt, 0.5, compiled)


def variants(algo: str, compile_too: bool) -> dict[str, Update]:
    make: Callable[..., Update] = dqn_update if algo == "dqn" else ppo_update
    out = {"eager (the reference loop's update)": make(fused=False, compiled=False),
           "eager, fused Adam": make(fused=True, compiled=False)}
    if algo == "ppo":
        out["one stacked actor-critic, fused Adam"] = ppo_update(fused=True, compiled=False, stacked=True)
    if compile_too:
        out["compiled (forward; clip + fused Adam)"] = make(fused=True, compiled=True)
        if algo == "ppo":
            out["stacked and compiled"] = ppo_update(fused=True, compiled=True, stacked=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", choices=["dqn", "ppo", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--n", type=int, default=200, help="updates per timing")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("LRL_NUM_THREADS", "1")))
    for algo in ["dqn", "ppo"] if args.algo == "both" else [args.algo]:
        fns = variants(algo, not args.no_compile)
        for fn in fns.values():  # warm-up, compilation included
            for _ in range(20):
                fn.step()
        times: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(args.rounds):
            for k, fn in fns.items():
                times[k].append(ms_per_call(fn.step, args.n))
        shape = "batch 64, 4-256-256-2 ReLU MLP" if algo == "dqn" else "batch 256, two 4-64-64 tanh MLPs (->2, ->1)"
        print(f"{algo.upper()} update, {shape}, {torch.get_num_threads()} thread(s), "
              f"load1 {os.getloadavg()[0]:.2f}, torch {torch.__version__}")
        for k, v in times.items():
            med = statistics.median(v)
            print(f"  {k:40s} {med:.3f} ms per update (rounds: {min(v):.3f}..{max(v):.3f}); "
                  f"x {UPDATES[algo]:,} updates = {med * UPDATES[algo] / 1e3:.1f} s")


if __name__ == "__main__":
    main()
