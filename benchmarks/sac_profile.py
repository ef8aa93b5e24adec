"""Where the time of one SAC frame goes (sac/pendulum: batch 256, 256x256 nets, one update per frame).

Times each part of lrl's SAC step in isolation, interleaved round by round in one process (so a busy machine slows
all parts alike), and SB3's ``SAC.train(1)`` on the same sizes for reference; then the whole lrl loop
(``lrl train sac/pendulum``) per frame, from the slope between two budgets, so start-up costs cancel. The whole loop
minus the parts is the glue: Lightning's loop and hooks, callbacks, ``Batch`` and TensorDict handling.

    python benchmarks/sac_profile.py                   # parts only (about a minute on an idle core)
    python benchmarks/sac_profile.py --loop            # also the whole loop (minutes)
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable

import torch
from flops import ms_per_call  # run as a script: benchmarks/ is on sys.path


def parts(batch: int, hidden: int, rounds: int, n: int) -> dict[str, float]:
    import gymnasium as gym
    from stable_baselines3 import SAC as SB3SAC
    from torchrl.data import LazyTensorStorage, RandomSampler, ReplayBuffer

    from lrl.algos.sac.loss import actor_loss, alpha_loss, critic_loss
    from lrl.algos.sac.module import SAC
    from lrl.data.collector import make_collector
    from lrl.data.env import make_vec_env, probe_env_spec
    from lrl.data.replay import KEYS
    from lrl.networks.target import polyak_update_
    from lrl.recipe import load

    recipe = load("sac/pendulum", [])
    spec = probe_env_spec(recipe.env)
    m = SAC(spec, lr=1e-3, hidden=[hidden, hidden])
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-3, fused=True)
    collector = make_collector("lean", make_vec_env(recipe.env, 1), spec, m.collection_policy(), steps_per_env=1,
                               env_seeds=[0], device="cpu")
    buffer = ReplayBuffer(storage=LazyTensorStorage(100_000), sampler=RandomSampler())
    for _ in range(2000):
        buffer.extend(collector.rollout().reshape(-1).select(*KEYS))
    td = buffer.sample(batch)
    obs, action, reward = td["observation"], td["action"], td["next", "reward"].squeeze(-1)
    nxt, term = td["next", "observation"], td["next", "terminated"].squeeze(-1)
    alpha = m.log_alpha.detach().exp()

    def losses() -> torch.Tensor:
        y = m.soft_target(reward, nxt, term, alpha)
        q = m.q_values(obs, action)
        a_pi, logp = m.policy_sample(obs)
        q_pi = m.q_values(obs, a_pi, frozen=True)
        return critic_loss(q, y) + actor_loss(q_pi, logp, alpha) + alpha_loss(m.log_alpha, logp, m.target_entropy)

    def forward_backward() -> None:
        opt.zero_grad(set_to_none=True)
        losses().backward()

    def actor_and_frozen_critics() -> None:
        a_pi, _ = m.policy_sample(obs)
        m.q_values(obs, a_pi, frozen=True)

    sb3 = SB3SAC("MlpPolicy", gym.make("Pendulum-v1"), learning_rate=1e-3, batch_size=batch, learning_starts=batch,
                 policy_kwargs={"net_arch": [hidden, hidden]}, device="cpu", seed=0)
    sb3.learn(batch + 10)
    def collect_and_extend() -> None:
        buffer.extend(collector.rollout().reshape(-1).select(*KEYS))

    forward_backward()
    fns: dict[str, Callable[[], object]] = {
        "collect one frame (policy + env step + TensorDict)": collector.rollout,
        "collect one frame and extend the replay buffer": collect_and_extend,
        "replay buffer: sample a batch": lambda: buffer.sample(batch),
        "target: a' ~ pi(s'), Q'(s', a')": lambda: m.soft_target(reward, nxt, term, alpha),
        "critics: Q(s, a)": lambda: m.q_values(obs, action),
        "actor: a~ ~ pi(s), frozen Q(s, a~)": actor_and_frozen_critics,
        "all losses, forward only": losses,
        "all losses, forward + one backward": forward_backward,
        "Adam step (fused, one group)": opt.step,
        "Polyak update of the target critics": lambda: polyak_update_(m.critic_target, m.critic, 0.005),
        "SB3 SAC.train(1) (sample + update + Polyak)": lambda: sb3.train(1, batch),
    }
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            times[k].append(ms_per_call(fn, n))
    return {k: statistics.median(v) for k, v in times.items()}


def loop_ms_per_frame(hidden: int, short: int, long: int) -> float:
    from lrl.launch import train

    logging.disable(logging.WARNING)
    os.chdir(tempfile.mkdtemp(prefix="lrl-sac-profile-"))
    quiet = ["eval.every=0", "eval.final=false", "checkpoint.every=0", f"algo.hidden=[{hidden},{hidden}]",
             "tracking.log_every=1000000"]
    out = {}
    for i, frames in enumerate((short, long, short, long)):
        start = time.perf_counter()
        train("sac/pendulum", [f"budget.frames={frames}", *quiet], run_dir=f"runs/{i}")
        out.setdefault(frames, []).append(time.perf_counter() - start)
    return (min(out[long]) - min(out[short])) / (long - short) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--n", type=int, default=20, help="calls per timing")
    parser.add_argument("--loop", action="store_true", help="also time the whole `lrl train` loop per frame")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("LRL_NUM_THREADS", "1")))
    med = parts(args.batch, args.hidden, args.rounds, args.n)
    print(f"| part (batch {args.batch}, {args.hidden}x{args.hidden} nets, median of {args.rounds}) | ms |")
    print("|---|---|")
    for k, v in med.items():
        print(f"| {k} | {v:.3f} |")
    if args.loop:
        per_frame = loop_ms_per_frame(args.hidden, 600, 1600)
        accounted = sum(med[k] for k in ("collect one frame and extend the replay buffer",
                                          "replay buffer: sample a batch", "all losses, forward + one backward",
                                          "Adam step (fused, one group)", "Polyak update of the target critics"))
        print(f"| whole `lrl train` loop, per frame | {per_frame:.3f} |")
        print(f"| of which glue (Lightning loop, hooks, callbacks, Batch) | {per_frame - accounted:.3f} |")


if __name__ == "__main__":
    main()
