"""The `imitation` library's preference comparisons (Christiano et al. 2017) on CartPole-v1 / InvertedPendulum-v4:
the reference for lrl's RLHF-for-control piece (issue 13), same task, label budget and frame budget.

Runs in its own virtualenv (imitation 1.0.1 pins gymnasium 0.29 and Stable-Baselines3 2.2; lrl is on gymnasium
1.x), never imports lrl::

    python3.11 -m venv /work/venvs/imitation
    /work/venvs/imitation/bin/pip install -r benchmarks/requirements-imitation.txt
    OMP_NUM_THREADS=1 /work/venvs/imitation/bin/python benchmarks/pref_imitation.py \
        --env CartPole-v1 --labels 200 --frames 100000 --seeds 0 1 2
    # the reference: the same PPO on the TRUE reward, same env wrappers and frames
    OMP_NUM_THREADS=1 /work/venvs/imitation/bin/python benchmarks/pref_imitation.py \
        --env CartPole-v1 --reward true --frames 100000 --seeds 0 1 2

One JSON line per (seed) is appended to ``--out`` (default ``benchmarks/results/pref_imitation.jsonl``).

Settings (all fixed here, printed into every JSON line under ``settings``)
-------------------------------------------------------------------------
* **Fixed horizon (absorbing state).** CartPole and InvertedPendulum pay +1 per step until the pole falls. A
  fragment of length k cut from inside an episode therefore always has true return k: on the plain envs every
  synthetic label is a coin flip (``--no-absorb`` runs that and reports ``tie_frac`` = 1.0). imitation's answer
  (its "variable horizon" guide; it refuses variable-length episodes unless ``allow_variable_horizon=True``) is a
  fixed horizon: here ``TimeLimit(seals.util.AbsorbAfterDoneWrapper(gym.make(env)), max_episode_steps)``: after
  the pole falls the episode goes on to the env's time limit (500 / 1000 steps) in an absorbing state (the last
  observation repeated, reward 0). Fragments that contain the fall then have a lower true return. The absorbing
  steps count as frames (they are env steps the agent takes); evaluation is on the plain env. Measured: at 100k
  frames the absorbing steps eat most of the budget and even PPO on the true reward barely learns (CartPole 24,
  InvertedPendulum 6 on seed 0), while on the plain env PPO on a reward learned from coin-flip labels reached 500
  on CartPole seed 0 (the episode's end leaks the true reward): see benchmarks/README.md.
* **Annotator**: ``SyntheticGatherer`` (Bradley-Terry on the undiscounted true fragment return, temperature 1,
  labels sampled 0/1, ``threshold`` 50, the library defaults). Fragments: ``RandomFragmenter``, fragment length 50,
  ``transition_oversampling`` 1.
* **Schedule**: ``total_comparisons`` = ``--labels``, ``total_timesteps`` = ``--frames`` (the agent's training
  frames; fragments are cut from the trajectories the agent collected while training, topped up with extra
  rollouts of the current policy when those are too few: ``env_steps`` counts all env steps, eval excluded),
  ``num_iterations`` 20, ``initial_comparison_frac`` 0.1 (10 % of the labels on the random policy before RL
  starts), ``query_schedule`` "hyperbolic", ``comparison_queue_size`` None (all labels kept) - imitation's defaults
  but ``num_iterations`` (its script default is 5; 20 gives fresher fragments).
* **Reward model**: ``NormalizedRewardNet(BasicRewardNet(obs, act; hidden 32-32, input RunningNorm),
  output RunningNorm)`` (imitation's script defaults), ``CrossEntropyRewardLoss``, ``BasicRewardTrainer`` with
  epochs 3, lr 1e-3, batch 32 per iteration, ``initial_epoch_multiplier`` 200 (imitation's script defaults). No
  ensemble, exploration_frac 0.
* **PPO** (SB3 2.2) as in lrl's ``recipes/ppo/cartpole.yaml`` = RL-Zoo's CartPole-v1 set: 8 envs x 32 steps
  (n_steps 32), batch 256, 20 epochs, gamma 0.98, GAE lambda 0.8, clip 0.2 and lr 1e-3 both decayed linearly to
  0 over ``--frames`` (a schedule on the agent's own frame counter: PreferenceComparisons calls ``learn`` once per
  iteration, which would restart SB3's progress-based schedules), ent_coef 0, vf_coef 0.5, max_grad_norm 0.5, MLP
  64-64 tanh, separate actor and critic. The same PPO on InvertedPendulum-v4 (Gaussian policy, SB3 defaults:
  state-independent log std initialised at 0).
* **Evaluation**: ``--episodes`` (default 10) deterministic episodes (``predict(deterministic=True)``) on the
  PLAIN env (``gym.make(env)``, no absorbing state), episode i seeded 10_000 + i; the true return.
* One process, one seed at a time, torch threads = ``OMP_NUM_THREADS`` (1 expected).

InvertedPendulum: gymnasium 0.29 has only ``InvertedPendulum-v4`` (lrl's recipes use v5: v5 pays no +1 on the step
on which the pole falls, otherwise the same task).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import gymnasium as gym
import imitation
import numpy as np
import torch
from gymnasium.wrappers import TimeLimit
from imitation.algorithms import preference_comparisons as pc
from imitation.rewards.reward_nets import BasicRewardNet, NormalizedRewardNet
from imitation.util import logger as imit_logger
from imitation.util.networks import RunningNorm
from seals.util import AbsorbAfterDoneWrapper
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv

EVAL_SEED = 10_000
FRAGMENT_LENGTH = 50
NUM_ITERATIONS = 20
RM_EPOCHS = 3
INITIAL_EPOCH_MULTIPLIER = 200.0
PPO_SETTINGS = dict(  # lrl recipes/ppo/cartpole.yaml == RL-Zoo PPO CartPole-v1
    num_envs=8, n_steps=32, batch_size=256, n_epochs=20, gamma=0.98, gae_lambda=0.8, lr=1e-3, clip=0.2,
    ent_coef=0.0, vf_coef=0.5, max_grad_norm=0.5, net_arch=[64, 64], activation="tanh", schedules="linear",
)


class StepCounter(gym.Wrapper):
    """Counts every env step (shared counter) so the frames really spent are reported."""

    count = 0

    def step(self, action):
        StepCounter.count += 1
        return self.env.step(action)


def make_env(env_id: str, absorb: bool, seed: int, rank: int):
    def thunk():
        env = gym.make(env_id)
        horizon = env.spec.max_episode_steps
        if absorb:
            env = TimeLimit(AbsorbAfterDoneWrapper(env), horizon)
        env = StepCounter(env)
        env.action_space.seed(seed + rank)
        return env

    return thunk


def evaluate(policy, env_id: str, episodes: int) -> list[float]:
    returns = []
    for i in range(episodes):
        env = gym.make(env_id)
        obs, _ = env.reset(seed=EVAL_SEED + i)
        done, total = False, 0.0
        while not done:
            action, _ = policy.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
        env.close()
    return returns


def make_ppo(venv, seed: int, frames: int) -> PPO:
    s = PPO_SETTINGS
    holder: dict = {}

    def linear(start: float):
        # progress on the agent's own frame counter over the whole budget (see the header)
        def schedule(_progress: float) -> float:
            done = holder["agent"].num_timesteps if "agent" in holder else 0
            return start * max(0.0, 1.0 - done / frames)

        return schedule

    agent = PPO(
        "MlpPolicy", venv, seed=seed, n_steps=s["n_steps"], batch_size=s["batch_size"], n_epochs=s["n_epochs"],
        gamma=s["gamma"], gae_lambda=s["gae_lambda"], learning_rate=linear(s["lr"]), clip_range=linear(s["clip"]),
        ent_coef=s["ent_coef"], vf_coef=s["vf_coef"], max_grad_norm=s["max_grad_norm"],
        policy_kwargs=dict(net_arch=dict(pi=s["net_arch"], vf=s["net_arch"]), activation_fn=torch.nn.Tanh),
        device="cpu", verbose=0,
    )
    holder["agent"] = agent
    return agent


def run_one(args, seed: int) -> dict:
    torch.manual_seed(seed)
    np.random.seed(seed)
    StepCounter.count = 0
    t0 = time.perf_counter()
    venv = DummyVecEnv([make_env(args.env, args.absorb, seed, r) for r in range(PPO_SETTINGS["num_envs"])])
    venv.seed(seed)
    agent = make_ppo(venv, seed, args.frames)
    extra: dict = {}
    if args.reward == "true":
        agent.learn(total_timesteps=args.frames)
        labels = 0
    else:
        rng = np.random.default_rng(seed)
        log = imit_logger.configure(folder=None, format_strs=[])
        reward_net = NormalizedRewardNet(
            BasicRewardNet(venv.observation_space, venv.action_space, normalize_input_layer=RunningNorm),
            normalize_output_layer=RunningNorm,
        )
        generator = pc.AgentTrainer(agent, reward_net, venv, rng=rng, exploration_frac=0.0, custom_logger=log)
        trainer = pc.BasicRewardTrainer(
            pc.PreferenceModel(reward_net), pc.CrossEntropyRewardLoss(), rng=rng, epochs=RM_EPOCHS, custom_logger=log,
        )
        algo = pc.PreferenceComparisons(
            generator, reward_net, num_iterations=NUM_ITERATIONS,
            fragmenter=pc.RandomFragmenter(rng=rng, warning_threshold=0, custom_logger=log),
            preference_gatherer=pc.SyntheticGatherer(rng=rng, custom_logger=log),
            reward_trainer=trainer, fragment_length=args.fragment_length, transition_oversampling=1,
            initial_comparison_frac=0.1, initial_epoch_multiplier=INITIAL_EPOCH_MULTIPLIER,
            query_schedule="hyperbolic", allow_variable_horizon=not args.absorb, custom_logger=log,
        )
        metrics = algo.train(total_timesteps=args.frames, total_comparisons=args.labels)
        ds = algo.dataset
        r1 = np.array([f.rews.sum() for f in ds.fragments1])
        r2 = np.array([f.rews.sum() for f in ds.fragments2])
        labels = len(ds)
        extra = {
            "rm_train_loss": float(metrics["reward_loss"]), "rm_train_accuracy": float(metrics["reward_accuracy"]),
            "tie_frac": float(np.mean(r1 == r2)),  # pairs whose true returns are equal: the label is a coin flip
        }
    train_s = time.perf_counter() - t0
    env_steps = StepCounter.count
    returns = evaluate(agent.policy, args.env, args.episodes)
    return {
        "library": f"imitation {imitation.__version__} (sb3 {__import__('stable_baselines3').__version__}, "
                   f"gymnasium {gym.__version__}, torch {torch.__version__})",
        "env": args.env, "reward": args.reward, "absorb": args.absorb, "seed": seed, "labels": labels,
        "frames": args.frames, "agent_frames": int(agent.num_timesteps), "env_steps": env_steps,
        "eval_mean_return": float(np.mean(returns)), "eval_returns": returns, "eval_episodes": args.episodes,
        "train_s": round(train_s, 1), "wall_s": round(time.perf_counter() - t0, 1),
        "threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "host": platform.node(), "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "settings": {"fragment_length": args.fragment_length, "num_iterations": NUM_ITERATIONS, "rm_epochs": RM_EPOCHS,
                     "initial_epoch_multiplier": INITIAL_EPOCH_MULTIPLIER, "initial_comparison_frac": 0.1,
                     "query_schedule": "hyperbolic", "ppo": PPO_SETTINGS},
        **extra,
    }


def summary(path: Path) -> str:
    """A markdown table of the JSON lines: one row per (env, reward, absorb, labels, fragment, frames)."""
    groups: dict = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        key = (r["env"], r["reward"], r["absorb"], r["labels"], r["settings"]["fragment_length"], r["frames"])
        groups.setdefault(key, []).append(r)
    out = ["| env | reward | fixed horizon | labels | fragment | frames | per-seed eval return (seed: return) | mean "
           "| env steps (mean) | tie frac (mean) | train s (mean) |", "|" + "---|" * 11]
    for (env, reward, absorb, labels, frag, frames), rows in sorted(groups.items(), key=str):
        rows.sort(key=lambda r: r["seed"])
        per_seed = ", ".join(f"{r['seed']}: {r['eval_mean_return']:.1f}" for r in rows)
        ties = [r["tie_frac"] for r in rows if "tie_frac" in r]
        out.append(
            f"| {env} | {reward} | {'yes' if absorb else 'no'} | {labels if reward == 'learned' else '-'} | "
            f"{frag if reward == 'learned' else '-'} | {frames} | {per_seed} | "
            f"{np.mean([r['eval_mean_return'] for r in rows]):.1f} | {np.mean([r['env_steps'] for r in rows]):.0f} | "
            f"{f'{np.mean(ties):.2f}' if ties else '-'} | {np.mean([r['train_s'] for r in rows]):.0f} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--env", default="CartPole-v1", choices=["CartPole-v1", "InvertedPendulum-v4"])
    p.add_argument("--reward", default="learned", choices=["learned", "true"])
    p.add_argument("--labels", type=int, default=1000, help="total_comparisons (ignored with --reward true)")
    p.add_argument("--frames", type=int, default=100_000, help="total_timesteps of the agent")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--fragment-length", type=int, default=FRAGMENT_LENGTH)
    p.add_argument("--no-absorb", dest="absorb", action="store_false", help="plain env (labels are ties)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "pref_imitation.jsonl")
    p.add_argument("--summary", action="store_true", help="print a markdown table of --out and exit")
    args = p.parse_args(argv)
    if args.summary:
        print(summary(args.out))
        return 0
    if args.episodes < 10:
        p.error("--episodes must be >= 10")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        row = run_one(args, seed)
        with args.out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{row['env']} reward={row['reward']} labels={row['labels']} seed={seed} frames={row['frames']} "
              f"env_steps={row['env_steps']} eval={row['eval_mean_return']:.1f} tie_frac={row.get('tie_frac')} "
              f"train_s={row['train_s']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
