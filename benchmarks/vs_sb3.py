"""lrl recipes against Stable-Baselines3 / sb3-contrib: same hyperparameters, same machine, same evaluation.

What is compared
----------------
``PAIRS`` below is the whole configuration: one entry per comparison, naming the lrl recipe, the SB3 (or
sb3_contrib) algorithm class and a function that maps the *resolved* lrl recipe (every default filled in, as
``lrl.recipe.load`` returns it, as a plain dict) to that class's keyword arguments. The mapping is strict: each
function must consume every key of the recipe's ``algo:`` and ``data:`` sections (``_Section.take`` /
``.expect`` / ``.ignore``), so a hyperparameter added to an lrl algorithm, or a recipe setting SB3 cannot
express (e.g. a shared actor-critic body), stops the entry with one line naming the key instead of silently
comparing different experiments. Adding an algorithm pair is one mapping function and one ``PAIRS`` line; the
workers, evaluation and summary are generic (an argument SB3 can only build with the env, such as the action
noise, is passed as a small spec with a ``build`` method, see ``ActionNoise``). The off-policy entries
(``dqn/cartpole`` ↔ DQN, ``sac/pendulum`` ↔ SAC, ``td3/pendulum`` ↔ TD3, ``ddpg/pendulum`` ↔ DDPG) share the
replay mapping ``_replay``; the few differences that live in lrl's or SB3's code rather than in a recipe key are
listed above it and in each mapping's docstring. An entry whose recipe is not in this checkout is skipped with a
message.

Protocol
--------
* Hyperparameters come from the lrl recipe (RL-Zoo's tuned sets for the CartPole recipes and for TD3/DDPG on
  Pendulum, SB3's SAC defaults with lr 1e-3 for sac/pendulum); SB3 gets them through the entry's mapping
  (``MlpPolicy`` with the same separate actor/critic MLP sizes, activation, initialisation, optimiser and ε,
  schedules, replay sizes and update ratio, a ``DummyVecEnv`` of ``env.num_envs`` envs made by ``make_vec_env``,
  device cpu). ``--frames`` is lrl's ``budget.frames`` and SB3's ``total_timesteps``, and the SB3 mapping sees it
  as ``budget.frames`` too (DQN's ε schedule is a fraction of it).
  lrl runs the recipe unchanged except ``seed``, ``budget.frames`` and switching off everything that SB3 does not
  do during ``learn``: ``eval.every=0 eval.final=false checkpoint.every=0`` (lrl still writes its
  final ``last.ckpt`` and logs training metrics to MLflow, which counts against it).
* Every training run is a fresh subprocess of this script (``--worker lrl|sb3``), so imports, thread settings and
  allocator state do not leak between runs. Seeds are interleaved and the order alternates (seed 0: lrl then
  SB3, seed 1: SB3 then lrl, ...), so slow drifts of a noisy machine hit both frameworks alike. On a many-core
  machine ``--jobs N`` runs N of them at once in that order (each with one torch thread and, for lrl, one MLflow
  store per seed); keep N below the number of cores, so every run has a core of its own.
* Both use one torch thread by default: lrl does this itself (``lrl.launch._threads``, or
  ``LRL_NUM_THREADS`` / ``OMP_NUM_THREADS`` when set), the SB3 worker does the same before building anything.
* ``--device cuda`` trains both on the GPU (lrl ``trainer.accelerator=gpu``, replay buffer on the GPU; SB3
  ``device="cuda"``, its buffer in host memory as always); evaluation stays the same.
* ``train_s`` is wall-clock from just before env/model construction to the end of learning. Heavy imports happen
  before the clock starts in both workers (SB3: ``stable_baselines3`` / ``sb3_contrib``; lrl: lightning, torchrl,
  mlflow and the lrl modules that ``lrl.launch.run`` imports lazily). For lrl the clock starts when
  ``lrl.launch.run`` is entered (after recipe loading) and stops when ``Trainer.fit`` returns, so it includes the
  MLflow run set-up and the final checkpoint write (for replay recipes with the buffer file next to it) but not
  the artifact upload after fit; ``fit_s`` is
  ``Trainer.fit`` alone and ``call_s`` the whole ``lrl.launch.train`` call. For SB3 ``train_s`` covers
  ``make_vec_env`` + the model constructor + ``learn``. ``proc_s`` is the whole subprocess (interpreter start,
  imports, training, evaluation), seen by the parent; ``load1`` is the 1-minute load average just before the run,
  to spot a busy machine.
* Evaluation (not timed in ``train_s``) is identical for both: ``--episodes`` (20) deterministic episodes of the
  recipe's environment, episode ``i`` on its own env seeded ``eval_seed + i``, each run to its end (termination or
  the time limit). lrl uses ``lrl.launch.evaluate_run`` (what ``lrl eval`` runs); SB3 uses the same loop with
  ``model.predict(obs, deterministic=True)``. An entry's ``bar`` is the mean return counted as "solved".
* The summary quotes medians (the reference machine has 2 noisy cores): median ``train_s`` per framework, the
  median of the per-seed ratios lrl/SB3 and the ratio of the medians, mean final return and seeds reaching the bar.

Usage::

    python benchmarks/vs_sb3.py                                    # every entry, 5 seeds, each recipe's budget
    python benchmarks/vs_sb3.py a2c/cartpole --seeds 3             # one entry
    python benchmarks/vs_sb3.py ppo/cartpole --seeds 1 --frames 20000   # quick smoke
    python benchmarks/vs_sb3.py ppo/cartpole --only lrl --precision bf16-mixed --seeds 2
    python benchmarks/vs_sb3.py --json-out results.json --work-dir /tmp/bench   # keep everything
    python benchmarks/vs_sb3.py sac/pendulum td3/pendulum --seeds 3 --jobs 6      # 16-core machine, 6 at once
    python benchmarks/vs_sb3.py sac/pendulum --seeds 2 --device cuda              # both on the GPU
    python benchmarks/vs_sb3.py --list                             # the entries and their SB3 keyword arguments

The reference column
--------------------
Entries in ``REFERENCES`` also run a hand-written loop (``--worker ref``, ``benchmarks/reference/<name>.py``: plain
PyTorch + gymnasium, no framework) on the SB3 keyword arguments of the entry, so all three run one configuration.
Its ``train_s`` runs from env construction to the end of learning, like SB3's; the summary adds lrl/ref ratios.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FRAMEWORKS = ("lrl", "sb3", "ref")
# entries with a hand-written reference loop (benchmarks/reference/<name>.py, fed the SB3 keyword arguments)
REFERENCES = {"ppo/cartpole": "ppo", "dqn/cartpole": "dqn", "sac/pendulum": "sac"}


class MappingError(Exception):
    """The resolved recipe holds something the entry's SB3 mapping does not (or cannot) express."""


# --- mapping helpers: resolved lrl recipe (plain dict) -> SB3 keyword arguments ----------------------------------
class _Section:
    """One recipe section whose keys must all be accounted for by a mapping."""

    def __init__(self, name: str, values: dict[str, Any]) -> None:
        self.name, self.values = name, {k: v for k, v in values.items() if k != "name"}
        self.used: set[str] = set()

    def take(self, key: str) -> Any:
        if key not in self.values:
            raise MappingError(f"the recipe has no {self.name}.{key}; update this entry's mapping to lrl's arguments")
        self.used.add(key)
        return self.values[key]

    def expect(self, key: str, *allowed: Any, why: str = "SB3 has no equivalent") -> Any:
        value = self.take(key)
        if value not in allowed:
            raise MappingError(f"{self.name}.{key}={value!r} cannot be compared ({why}); use {allowed[0]!r}")
        return value

    def ignore(self, *keys: str) -> None:
        """Keys that do not change what is learned (e.g. ``compile``)."""
        for key in keys:
            self.take(key)

    def done(self) -> None:
        left = sorted(set(self.values) - self.used)
        if left:
            raise MappingError(f"{', '.join(f'{self.name}.{k}' for k in left)} not mapped to SB3; extend this "
                               "entry's mapping (or mark the key as ignorable) before comparing")


class _Linear:
    """RL-Zoo's ``lin_x``: ``x * progress_remaining`` (1 → 0 over the run), lrl's ``linear`` schedules."""

    def __init__(self, start: float) -> None:
        self.start = start

    def __call__(self, progress_remaining: float) -> float:
        return self.start * progress_remaining

    def __repr__(self) -> str:
        return f"lin_{self.start:g}"


def _schedule(value: float, kind: str) -> float | _Linear:
    if kind not in ("constant", "linear"):
        raise MappingError(f"schedule '{kind}' has no SB3 mapping here")
    return _Linear(value) if kind == "linear" else value


def _policy_kwargs(algo: _Section, optimizer: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """lrl's ``ActorCritic`` (separate bodies, orthogonal init with SB3's gains) as SB3 ``MlpPolicy`` arguments."""
    from torch import nn

    activations = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU}
    hidden = algo.take("hidden") or []
    if "shared" in algo.values:  # TRPO/NPG always have separate actor and critic, without the switch
        algo.expect("shared", False, why="SB3 >= 1.8 has no shared MLP layers between actor and critic")
    name, opt_kwargs = optimizer
    return {"net_arch": {"pi": list(hidden), "vf": list(hidden)}, "activation_fn": activations[algo.take("activation")],
            "ortho_init": algo.take("ortho_init"), "log_std_init": algo.take("log_std_init"),
            "optimizer_class": getattr(importlib.import_module("torch.optim"), name), "optimizer_kwargs": opt_kwargs}


def _on_policy_common(recipe: dict[str, Any], algo: _Section) -> dict[str, Any]:
    env = recipe["env"]
    return {"n_steps": recipe["data"]["frames_per_batch"] // env["num_envs"], "gamma": algo.take("gamma"),
            "gae_lambda": algo.take("gae_lambda"), "normalize_advantage": algo.take("normalize_advantage")}


def ppo_kwargs(recipe: dict[str, Any]) -> dict[str, Any]:
    algo, data = _Section("algo", recipe["algo"]), _Section("data", recipe["data"])
    data.ignore("frames_per_batch", "collector")  # -> n_steps; the collector does not change what is learned
    data.expect("complete_episodes", False, why="SB3's rollouts are n_steps long, cut mid-episode")
    data.expect("streams", None, why="SB3 has no extra data streams")
    mb = algo.take("minibatch_size")
    out = {
        **_on_policy_common(recipe, algo),
        "learning_rate": _schedule(algo.take("lr"), algo.take("lr_schedule")),
        "clip_range": _schedule(algo.take("clip_range"), algo.take("clip_schedule")),
        "clip_range_vf": algo.take("clip_range_vf"), "vf_coef": algo.take("vf_coef"),
        "ent_coef": algo.take("ent_coef"), "max_grad_norm": _grad_norm(algo.take("max_grad_norm")),
        "target_kl": algo.take("target_kl"), "n_epochs": algo.take("epochs"),
        "batch_size": mb if mb is not None else recipe["data"]["frames_per_batch"],
        "policy_kwargs": _policy_kwargs(algo, ("Adam", {"eps": algo.take("adam_eps")})),
    }
    algo.ignore("compile")
    algo.expect("encoder", None, why="these entries compare vector-observation MLP policies")
    algo.done()
    data.done()
    return out


def a2c_kwargs(recipe: dict[str, Any]) -> dict[str, Any]:
    algo, data = _Section("algo", recipe["algo"]), _Section("data", recipe["data"])
    data.ignore("frames_per_batch", "collector")  # -> n_steps; the collector does not change what is learned
    data.expect("complete_episodes", False, why="SB3's rollouts are n_steps long, cut mid-episode")
    data.expect("streams", None, why="SB3 has no extra data streams")  # one whole-rollout step: declared by A2C
    algo.expect("critic_lr", None, why="SB3's A2C has one learning rate")
    algo.expect("critic_lambda", None, recipe["algo"]["gae_lambda"], why="SB3's value target is the GAE λ-return")
    if algo.take("optimizer") == "rmsprop":
        optimizer = ("RMSprop", {"alpha": algo.take("rms_alpha"), "eps": algo.take("optim_eps"), "weight_decay": 0})
    else:
        algo.ignore("rms_alpha")
        optimizer = ("Adam", {"eps": algo.take("optim_eps")})
    out = {
        **_on_policy_common(recipe, algo),
        "learning_rate": _schedule(algo.take("lr"), algo.take("lr_schedule")),
        "vf_coef": algo.take("vf_coef"), "ent_coef": algo.take("ent_coef"),
        "max_grad_norm": _grad_norm(algo.take("max_grad_norm")),
        "policy_kwargs": _policy_kwargs(algo, optimizer),  # an explicit optimizer_class overrides use_rms_prop
    }
    algo.ignore("compile")
    algo.expect("encoder", None, why="these entries compare vector-observation MLP policies")
    algo.done()
    data.done()
    return out


def trpo_kwargs(recipe: dict[str, Any]) -> dict[str, Any]:
    """sb3_contrib TRPO: Hessian-of-KL Fisher products on every state, CG from x0 = 0, backtracking line search.

    lrl tries b^j·Δ for j = 0 … ``max_backtracks`` (Rossi Alg. 7.1: U + 1 candidates); sb3_contrib tries
    ``line_search_max_iter`` candidates, so the latter is ``max_backtracks + 1``. ``critic_epochs`` passes of
    ``critic_minibatch_size`` minibatches are sb3_contrib's ``n_critic_updates`` and ``batch_size``."""
    algo, data = _Section("algo", recipe["algo"]), _Section("data", recipe["data"])
    data.ignore("frames_per_batch", "collector")  # -> n_steps; the collector does not change what is learned
    data.expect("complete_episodes", False, why="SB3's rollouts are n_steps long, cut mid-episode")
    data.expect("streams", None, why="SB3 has no extra data streams")  # one whole-rollout step: declared by TRPO
    algo.expect("line_search", None, True, why="sb3_contrib's TRPO always line-searches (no NPG mode)")
    algo.expect("step_size", None, why="sb3_contrib's step is always sqrt(2δ / xᵀFx)")
    algo.expect("fvp_fraction", 1.0, why="sb3_contrib's sub_sampling_factor subsamples the whole step, not the FVP")
    algo.expect("fvp_method", "hessian", why="sb3_contrib multiplies by the Hessian of the KL (double backprop)")
    algo.expect("cg_residual_tol", 1e-10, why="sb3_contrib's conjugate-gradient tolerance is fixed at 1e-10")
    out = {
        **_on_policy_common(recipe, algo),
        "target_kl": algo.take("max_kl"), "cg_max_steps": algo.take("cg_iterations"),
        "cg_damping": algo.take("damping"), "line_search_shrinking_factor": algo.take("backtrack_coef"),
        "line_search_max_iter": algo.take("max_backtracks") + 1, "learning_rate": algo.take("critic_lr"),
        "n_critic_updates": algo.take("critic_epochs"), "batch_size": algo.take("critic_minibatch_size"),
        "policy_kwargs": _policy_kwargs(algo, ("Adam", {"eps": algo.take("adam_eps")})),
    }
    algo.ignore("compile")
    algo.expect("encoder", None, why="these entries compare vector-observation MLP policies")
    algo.done()
    data.done()
    return out


def _grad_norm(value: float | None) -> float:
    return float("inf") if value is None else float(value)  # SB3 always clips; +inf never does


# --- off-policy entries (replay DataModule) ----------------------------------------------------------------------
# Conventions shared by all four (the SB3 side is RL-Zoo's / SB3's own configuration; the residual differences are
# in lrl's code, not in a recipe key, so they cannot be mapped away and are listed here instead):
# * SB3 trains after a collection when ``num_timesteps > learning_starts``, lrl when ``frames >= learning_starts``.
#   Both act uniformly at random for the first ``learning_starts`` frames (lrl per collection step, SB3 per env
#   step). With ``frames_per_step`` = 1 (the Pendulum recipes) lrl's first update therefore comes one frame earlier
#   and lrl makes one update more over the run (e.g. 19,901 vs 19,900 for sac/pendulum); where
#   ``learning_starts`` is not a multiple of ``frames_per_step`` (dqn/cartpole: 1000 vs 256) the updates coincide
#   and only the last partial warm-up chunk differs (frames 1000-1023: uniform in lrl, ε-greedy with ε ≈ 0.88 in
#   SB3). ``learning_starts`` is passed unchanged, so SB3 runs exactly RL-Zoo's setting.
# * Both overshoot the budget to the next whole collection step (dqn/cartpole: 50,176 frames on both sides).
# * SB3 stores actions scaled to [-1, 1] and feeds them to its critics in that scale; lrl stores and feeds the env
#   action (on Pendulum, 2x SB3's): same function class, different first-layer input scale.
# * lrl writes the replay buffer next to its final ``last.ckpt`` (inside ``train_s``).
def _replay(recipe: dict[str, Any], data: _Section) -> dict[str, Any]:
    """The replay ``data:`` keys as SB3 off-policy arguments (both count ``learning_starts`` and the buffer in
    frames over all envs; SB3 counts ``train_freq`` in vector-env steps of ``num_envs`` frames each)."""
    n, fps = recipe["env"]["num_envs"], data.take("frames_per_step")
    if fps % n:
        raise MappingError(f"data.frames_per_step={fps} is not a multiple of env.num_envs={n}")
    data.expect("random_warmup", True, why="SB3 always acts uniformly at random before learning_starts")
    data.expect("streams", None, why="SB3 has no extra data streams")
    data.ignore("storage", "buffer_device")  # where the buffer lives, not what is in it
    return {"buffer_size": data.take("buffer_size"), "batch_size": data.take("batch_size"),
            "learning_starts": data.take("learning_starts"), "train_freq": fps // n,
            "gradient_steps": data.take("updates_per_step")}


def _optimizer_kwargs(algo: _Section) -> dict[str, Any]:
    return {"optimizer_class": importlib.import_module("torch.optim").Adam,
            "optimizer_kwargs": {"eps": algo.take("adam_eps")}}


def _activation(algo: _Section) -> type:
    from lrl.networks.mlp import ACTIVATIONS

    return ACTIVATIONS[algo.take("activation")]


def _hidden(algo: _Section, default: list[int]) -> list[int]:
    """``algo.hidden`` as lrl reads it: None means the module's default ([] means no hidden layer)."""
    hidden = algo.take("hidden")
    return list(default if hidden is None else hidden)


def _same_or_none(algo: _Section, key: str, value: Any, why: str) -> None:
    """``key`` must be None (lrl: "use ``value``") or equal to ``value``: SB3 has one setting for both."""
    algo.expect(key, None, value, why=why)


def dqn_kwargs(recipe: dict[str, Any]) -> dict[str, Any]:
    """SB3 DQN. ε: SB3's ``LinearSchedule`` reaches ``exploration_final_eps`` after ``exploration_fraction`` of
    ``total_timesteps`` (= ``budget.frames``), so the fraction is ``eps_decay_frames / budget.frames`` (RL-Zoo's
    0.16 for 8000 / 50000). SB3 updates ε after every env step; lrl reads it once per collection step (dqn/cartpole:
    constant over each 256-frame chunk, at most 0.03 above SB3's value).

    Target network: lrl counts ``target_update_every`` in gradient updates, SB3 ``target_update_interval`` in env
    frames, copying during collection (the online network does not change there). A hard copy after every
    ``updates_per_step`` updates (the end of each update phase, lrl) is therefore the same network as SB3's copy
    during the next collection phase for any interval of at most ``frames_per_step`` frames (RL-Zoo's 10 included);
    the mapping passes ``frames_per_step`` (one copy per phase). Other counts depend on how the warm-up aligns
    with the two counters and are refused, as is Polyak averaging unless there is one update per env step."""
    algo, data = _Section("algo", recipe["algo"]), _Section("data", recipe["data"])
    out = _replay(recipe, data)
    n, fps, ups = recipe["env"]["num_envs"], recipe["data"]["frames_per_step"], recipe["data"]["updates_per_step"]
    algo.expect("target", "max", why="SB3's DQN has no Double DQN / Double Q-learning target")
    algo.expect("loss", "huber", why="SB3's DQN uses the Huber loss (smooth_l1_loss)")
    algo.expect("eps_schedule", "linear", why="SB3's exploration schedule is linear")
    kind = algo.expect("target_update", "hard", "polyak", why="SB3's DQN always has a target network")
    if kind == "hard":
        algo.ignore("tau")  # only read by Polyak updates
        every = algo.take("target_update_every")
        if every != ups:
            raise MappingError(f"algo.target_update_every={every} cannot be compared (SB3 copies the target during "
                               f"collection, so only a copy after every update phase maps exactly); use {ups} "
                               "(= data.updates_per_step)")
        out.update(tau=1.0, target_update_interval=fps)
    else:
        algo.ignore("target_update_every")  # only read by hard updates
        if fps != n or ups != 1:
            raise MappingError("algo.target_update=polyak is compared only with one update per env step "
                               "(data.frames_per_step = env.num_envs, data.updates_per_step = 1): SB3 averages "
                               "during collection, lrl after each update")
        out.update(tau=algo.take("tau"), target_update_interval=n)
    decay = algo.take("eps_decay_frames")
    if decay <= 0:
        raise MappingError(f"algo.eps_decay_frames={decay} cannot be compared (SB3's schedule needs a positive "
                           "exploration_fraction); use a positive number of frames")
    out.update({
        "learning_rate": _schedule(algo.take("lr"), algo.take("lr_schedule")), "gamma": algo.take("gamma"),
        "exploration_initial_eps": algo.take("eps_start"), "exploration_final_eps": algo.take("eps_end"),
        "exploration_fraction": decay / recipe["budget"]["frames"],
        "max_grad_norm": _grad_norm(algo.take("max_grad_norm")),
        # SB3's QNetwork and lrl's Q MLP both keep PyTorch's default initialisation
        "policy_kwargs": {"net_arch": _hidden(algo, [64, 64]), "activation_fn": _activation(algo),
                          **_optimizer_kwargs(algo)},
    })
    algo.ignore("compile")
    algo.expect("encoder", None, why="these entries compare vector-observation MLP policies")
    algo.done()
    data.done()
    return out


def sac_kwargs(recipe: dict[str, Any]) -> dict[str, Any]:
    """SB3 SAC. Not expressible, so listed here: SB3 steps α, then the critics, then the actor, evaluating the
    actor's loss with the critics *after* their step; lrl sums the three losses and takes one Adam step (the
    actor sees the critics before the step, as Alg. 11.1; docs/sac.md). α is read before its update in both."""
    algo, data = _Section("algo", recipe["algo"]), _Section("data", recipe["data"])
    out = _replay(recipe, data)
    lr = algo.take("lr")
    for key in ("actor_lr", "critic_lr", "alpha_lr"):
        _same_or_none(algo, key, lr, why="SB3's SAC has one learning rate for actor, critics and α")
    # SB3 tests ``gradient_step % target_update_interval`` with the step index *within* one train() call, so
    # only an update after every gradient step means the same in both
    algo.expect("target_update_every", 1, why="SB3 counts target_update_interval within each train() call")
    algo.expect("log_std_min", -20.0, why="SB3's SAC clamps log σ to [-20, 2] (LOG_STD_MIN)")
    algo.expect("log_std_max", 2.0, why="SB3's SAC clamps log σ to [-20, 2] (LOG_STD_MAX)")
    alpha = algo.take("alpha")
    target_entropy = algo.take("target_entropy")
    hidden = _hidden(algo, [256, 256])
    critic_hidden = algo.take("critic_hidden")
    out.update({
        "learning_rate": lr, "gamma": algo.take("gamma"), "tau": algo.take("tau"), "target_update_interval": 1,
        "ent_coef": f"auto_{alpha:g}" if algo.take("autotune_alpha") else float(alpha),
        "target_entropy": "auto" if target_entropy is None else float(target_entropy),
        "policy_kwargs": {"net_arch": {"pi": hidden, "qf": hidden if critic_hidden is None else list(critic_hidden)},
                          "activation_fn": _activation(algo), "n_critics": algo.take("n_critics"),
                          **_optimizer_kwargs(algo)},
    })
    algo.ignore("compile")
    algo.done()
    data.done()
    return out


@dataclass(frozen=True)
class ActionNoise:
    """An SB3 action noise, built by the SB3 worker once the env's action dimension is known (so the mapping needs
    neither SB3 nor an env). SB3 adds it in the [-1, 1]-scaled action space, lrl scales it by the half-range:
    the same σ. OU: lrl's unit process times σ is SB3's process with that σ (same θ, dt, reset at episode ends)."""

    kind: str  # "normal" | "ou"
    sigma: float
    theta: float = 0.15
    dt: float = 1e-2

    def build(self, n_actions: int) -> Any:
        import numpy as np
        from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise

        mean, sigma = np.zeros(n_actions), self.sigma * np.ones(n_actions)
        if self.kind == "ou":
            return OrnsteinUhlenbeckActionNoise(mean, sigma, theta=self.theta, dt=self.dt)
        return NormalActionNoise(mean, sigma)


def _deterministic_ac(recipe: dict[str, Any], algo: _Section, data: _Section) -> dict[str, Any]:
    """What DDPG and TD3 share. Not expressible, so listed here: SB3 adds the action noise to the uniformly random
    warm-up actions too (then clips to the bounds); lrl's warm-up actions are uniform."""
    out = _replay(recipe, data)
    lr, tau = algo.take("lr"), algo.take("tau")
    _same_or_none(algo, "actor_lr", lr, why="SB3 has one learning rate for actor and critics")
    _same_or_none(algo, "actor_tau", tau, why="SB3 has one Polyak weight for actor and critic targets")
    algo.expect("loss", "mse", why="SB3's critics regress with the squared error")
    algo.expect("max_grad_norm", None, why="SB3's DDPG/TD3 do not clip gradients")
    std = algo.take("exploration_std")
    final, decay = algo.take("exploration_std_final"), algo.take("exploration_decay_frames")
    if final is not None and decay > 0 and final != std:
        raise MappingError(f"algo.exploration_std_final={final!r} cannot be compared (SB3's action noise has a "
                           "fixed σ); use None")
    if algo.expect("exploration", "gaussian", "ou") == "ou":
        noise = ActionNoise("ou", std, algo.take("ou_theta"), algo.take("ou_dt"))
    else:
        algo.ignore("ou_theta", "ou_dt")  # only read by the OU process
        noise = ActionNoise("normal", std)
    hidden = _hidden(algo, [400, 300])
    critic_hidden = algo.take("critic_hidden")
    out.update({
        "learning_rate": lr, "gamma": algo.take("gamma"), "tau": tau, "action_noise": noise,
        # SB3's actor (create_mlp + Tanh) and critics keep PyTorch's default initialisation, as lrl's
        "policy_kwargs": {"net_arch": {"pi": hidden, "qf": hidden if critic_hidden is None else list(critic_hidden)},
                          "activation_fn": _activation(algo), **_optimizer_kwargs(algo)},
    })
    algo.ignore("compile")
    return out


def td3_kwargs(recipe: dict[str, Any]) -> dict[str, Any]:
    """SB3 TD3: both count policy_delay over all critic updates from 1; smoothing noise in the scaled space."""
    algo, data = _Section("algo", recipe["algo"]), _Section("data", recipe["data"])
    out = _deterministic_ac(recipe, algo, data)
    out["policy_kwargs"]["n_critics"] = algo.take("n_critics")
    out.update(policy_delay=algo.take("policy_delay"), target_policy_noise=algo.take("target_policy_noise"),
               target_noise_clip=algo.take("target_noise_clip"))
    algo.done()
    data.done()
    return out


def ddpg_kwargs(recipe: dict[str, Any]) -> dict[str, Any]:
    """SB3 DDPG (TD3 with one critic, no delay, no target smoothing: lrl's DDPG has none of them either)."""
    algo, data = _Section("algo", recipe["algo"]), _Section("data", recipe["data"])
    out = _deterministic_ac(recipe, algo, data)
    algo.done()
    data.done()
    return out


@dataclass(frozen=True)
class Pair:
    recipe: str  # lrl recipe name (recipes/<algo>/<env>.yaml)
    sb3_class: str  # "module:Class"
    sb3_kwargs: Callable[[dict[str, Any]], dict[str, Any]]  # resolved recipe -> constructor kwargs
    bar: float  # mean deterministic return counted as solved


PAIRS: dict[str, Pair] = {p.recipe: p for p in (
    Pair("ppo/cartpole", "stable_baselines3:PPO", ppo_kwargs, 475.0),
    Pair("a2c/cartpole", "stable_baselines3:A2C", a2c_kwargs, 475.0),
    Pair("trpo/cartpole", "sb3_contrib:TRPO", trpo_kwargs, 475.0),
    Pair("dqn/cartpole", "stable_baselines3:DQN", dqn_kwargs, 475.0),
    Pair("sac/pendulum", "stable_baselines3:SAC", sac_kwargs, -200.0),
    Pair("td3/pendulum", "stable_baselines3:TD3", td3_kwargs, -200.0),
    Pair("ddpg/pendulum", "stable_baselines3:DDPG", ddpg_kwargs, -200.0),
)}


def _env_kwargs(recipe: dict[str, Any]) -> dict[str, Any]:
    """The recipe's env section as ``make_vec_env`` arguments (observation/reward normalisation not wired yet)."""
    env = recipe["env"]
    for key in ("normalize_obs", "normalize_reward"):
        if env[key]:
            raise MappingError(f"env.{key}=true: wire SB3's VecNormalize (and its statistics at evaluation) first")
    if env["vectorization"] != "sync":
        raise MappingError("env.vectorization: only 'sync' (SB3's DummyVecEnv) is compared")
    kwargs = dict(env["kwargs"])
    if env["max_episode_steps"] is not None:
        kwargs["max_episode_steps"] = env["max_episode_steps"]
    return {"env_id": env["id"], "n_envs": env["num_envs"], "env_kwargs": kwargs}


def _torch_threads() -> int:
    """What ``lrl.launch._threads`` picks for a single-device run."""
    for var in ("LRL_NUM_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(var, "").isdigit() and int(os.environ[var]) > 0:
            return int(os.environ[var])
    return 1


def _versions(*names: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str] = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "-"
    return out


# --- workers (run in their own subprocess) -----------------------------------------------------------------------
def phase_clocks() -> dict[str, float]:
    """Wrap ``lrl.launch.run`` and ``Trainer.fit`` (for the rest of this process) so the returned dict gets
    ``start`` (run entered), ``fit_start`` and ``fit_end``: train time = fit_end − start, without start-up imports.
    Also used by lm_compare.py, so both comparisons time lrl the same way."""
    import lightning.pytorch as pl

    import lrl.launch as launch

    marks: dict[str, float] = {}
    real_run, real_fit = launch.run, pl.Trainer.fit

    def timed_run(*a: Any, **kw: Any) -> Any:
        marks.setdefault("start", time.perf_counter())
        return real_run(*a, **kw)

    def timed_fit(self: pl.Trainer, *a: Any, **kw: Any) -> Any:
        marks["fit_start"] = time.perf_counter()
        try:
            return real_fit(self, *a, **kw)
        finally:
            marks["fit_end"] = time.perf_counter()

    launch.run = timed_run  # type: ignore[assignment]
    pl.Trainer.fit = timed_fit  # type: ignore[method-assign]
    return marks


def worker_lrl(recipe: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    # Everything lrl.launch.run imports lazily is imported here, before any clock starts (as SB3 is imported
    # before its clock starts).
    import mlflow  # noqa: F401  (imported lazily by Lightning's MLFlowLogger)
    import torch

    import lrl.callbacks
    import lrl.launch as launch
    import lrl.tracking  # noqa: F401
    from lrl.recipe.registry import algorithm_class, datamodule_class

    algorithm_class(recipe["algo"]["name"])  # imports the algorithm and data modules (and torchrl, tensordict)
    datamodule_class(recipe["data"]["name"])

    marks = phase_clocks()

    overrides = [f"seed={args.seed}", f"budget.frames={args.frames}", "eval.every=0", "eval.final=false",
                 "checkpoint.every=0", "checkpoint.every_minutes=0"]
    if args.precision:
        overrides.append(f"trainer.precision={args.precision}")
    if args.device == "cuda":
        overrides += ["trainer.accelerator=gpu", "trainer.devices=1"]
    else:  # like SB3's device="cpu", also on a machine with a GPU (recipes may say accelerator: auto)
        overrides.append("trainer.accelerator=cpu")
    run_dir = Path(args.run_dir)
    t_call = time.perf_counter()
    result = launch.train(args.pair, overrides, run_dir=run_dir, tracking_uri=args.tracking_uri)
    call_s = time.perf_counter() - t_call
    if "start" not in marks or "fit_end" not in marks:
        raise RuntimeError("lrl.launch.run / Trainer.fit were not called as expected; update the timing hooks")
    threads = torch.get_num_threads()
    t_eval = time.perf_counter()
    ev = launch.evaluate_run(run_dir, episodes=args.episodes, seed=args.eval_seed)
    eval_s = time.perf_counter() - t_eval
    return {
        "frames": int(result.clock),  # type: ignore[union-attr]
        "train_s": marks["fit_end"] - marks["start"], "fit_s": marks["fit_end"] - marks["fit_start"],
        "call_s": call_s, "eval_s": eval_s, "torch_threads": threads,
        "return_mean": float(ev["return_mean"]), "return_std": float(ev["return_std"]),
        "returns": [float(r) for r in ev["returns"]],
        "versions": _versions("lrl", "torch", "lightning", "torchrl", "gymnasium", "mlflow"),
    }


def worker_sb3(recipe: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import torch
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv

    pair = PAIRS[args.pair]
    module, _, name = pair.sb3_class.partition(":")
    cls = getattr(importlib.import_module(module), name)
    kwargs = pair.sb3_kwargs(recipe)
    env_kwargs = _env_kwargs(recipe)

    torch.set_num_threads(_torch_threads())
    t0 = time.perf_counter()
    env = make_vec_env(**env_kwargs, seed=args.seed, vec_env_cls=DummyVecEnv)
    n_actions = int(np.prod(env.action_space.shape or (1,)))
    kwargs = {k: v.build(n_actions) if isinstance(v, ActionNoise) else v for k, v in kwargs.items()}
    model = cls("MlpPolicy", env, device=args.device, seed=args.seed, verbose=0, **kwargs)
    t_fit = time.perf_counter()
    model.learn(total_timesteps=args.frames)
    t1 = time.perf_counter()
    env.close()

    returns, eval_s = _evaluate(lambda obs: model.predict(obs, deterministic=True)[0], env_kwargs, args)
    arr = np.asarray(returns)
    return {
        "frames": int(model.num_timesteps), "train_s": t1 - t0, "fit_s": t1 - t_fit, "call_s": t1 - t0,
        "eval_s": eval_s, "torch_threads": torch.get_num_threads(),
        "return_mean": float(arr.mean()), "return_std": float(arr.std()), "returns": returns,
        "versions": _versions("stable_baselines3", "sb3_contrib", "torch", "gymnasium"),
    }


def worker_ref(recipe: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    train = importlib.import_module(f"reference.{REFERENCES[args.pair]}").train
    kwargs, env_kwargs = PAIRS[args.pair].sb3_kwargs(recipe), _env_kwargs(recipe)
    torch.set_num_threads(_torch_threads())
    t0 = time.perf_counter()
    policy, frames = train(kwargs, env_kwargs, args.seed, args.frames, args.device)
    t1 = time.perf_counter()
    returns, eval_s = _evaluate(policy, env_kwargs, args)
    arr = np.asarray(returns)
    return {"frames": frames, "train_s": t1 - t0, "fit_s": t1 - t0, "call_s": t1 - t0, "eval_s": eval_s,
            "torch_threads": torch.get_num_threads(), "return_mean": float(arr.mean()),
            "return_std": float(arr.std()), "returns": returns, "versions": _versions("torch", "gymnasium")}


def _evaluate(policy: Callable[[Any], Any], env_kwargs: dict[str, Any],
              args: argparse.Namespace) -> tuple[list[float], float]:
    """The SB3 and reference workers' evaluation: episode i on its own env seeded ``eval_seed + i``."""
    import gymnasium as gym

    t_eval = time.perf_counter()
    returns: list[float] = []
    for i in range(args.episodes):
        eval_env = gym.make(env_kwargs["env_id"], **env_kwargs["env_kwargs"])
        obs, _ = eval_env.reset(seed=args.eval_seed + i)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = eval_env.step(policy(obs))
            total += float(reward)
            done = terminated or truncated
        eval_env.close()
        returns.append(total)
    return returns, time.perf_counter() - t_eval


def worker_main(args: argparse.Namespace) -> None:
    recipe = json.loads(Path(args.recipe_json).read_text())
    # what lrl gets as budget.frames: the SB3 mapping reads it (DQN's exploration_fraction)
    recipe["budget"]["frames"] = args.frames
    worker = {"lrl": worker_lrl, "sb3": worker_sb3, "ref": worker_ref}[args.worker]
    out = worker(recipe, args)
    Path(args.result).write_text(json.dumps(out))


# --- driver ------------------------------------------------------------------------------------------------------
def resolve(pair: Pair) -> dict[str, Any]:
    """The resolved recipe as a plain dict, after checking that the SB3 side can express all of it."""
    from lrl.errors import LrlError
    from lrl.recipe import load

    try:
        recipe = load(pair.recipe).to_dict()
    except LrlError as err:
        raise FileNotFoundError(err.message) from None
    pair.sb3_kwargs(recipe)
    _env_kwargs(recipe)
    return recipe


def _check_frames(recipe: dict[str, Any], frames: int) -> None:
    """A replay run shorter than its warm-up is no comparison: lrl's replay stream collects up to
    ``learning_starts`` before its first update whatever the budget, SB3 stops at ``total_timesteps`` without one."""
    starts = recipe["data"].get("learning_starts")
    if starts is not None and frames <= starts:
        raise MappingError(f"--frames {frames} is within data.learning_starts={starts} (lrl would collect "
                           f"{starts} frames, SB3 {frames}, neither would learn); use --frames > {starts}")


def _init_tracking(work: Path, uri: str) -> None:
    """Create the MLflow database and experiment once, untimed, so no lrl run pays for the schema migration."""
    code = (f"import mlflow; c = mlflow.MlflowClient({uri!r}); "
            "c.get_experiment_by_name('lrl') or c.create_experiment('lrl')")
    subprocess.run([sys.executable, "-c", code], cwd=work, check=True, capture_output=True)


def _seed_store(work: Path, seed: int) -> str:
    uri = f"sqlite:///{work / f'mlflow-seed{seed}.db'}"
    _init_tracking(work, uri)
    return uri


def run_one(framework: str, pair: Pair, seed: int, frames: int, recipe_json: Path, args: argparse.Namespace,
            work: Path, uri: str) -> dict[str, Any]:
    tag = f"{pair.recipe.replace('/', '-')}-{framework}-seed{seed}"
    result_file, log_file = work / f"{tag}.json", work / f"{tag}.log"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", framework, "--pair", pair.recipe,
           "--recipe-json", str(recipe_json), "--seed", str(seed), "--frames", str(frames),
           "--episodes", str(args.episodes), "--eval-seed", str(args.eval_seed), "--result", str(result_file)]
    if framework == "lrl":
        cmd += ["--run-dir", str(work / tag), "--tracking-uri", uri]
        if args.precision:
            cmd += ["--precision", args.precision]
    if args.device != "cpu":
        cmd += ["--device", args.device]
    load1 = os.getloadavg()[0]
    t0 = time.perf_counter()
    with log_file.open("w") as log:  # the worker runs in `work`, so nothing (e.g. ./mlruns) lands in the repo
        proc = subprocess.run(cmd, cwd=work, stdout=log, stderr=subprocess.STDOUT, check=False)
    proc_s = time.perf_counter() - t0
    if proc.returncode != 0 or not result_file.is_file():
        tail = "".join(log_file.read_text().splitlines(keepends=True)[-40:])
        raise SystemExit(f"{tag} failed (exit {proc.returncode}); last lines of {log_file}:\n{tail}")
    out: dict[str, Any] = json.loads(result_file.read_text())
    label = f"lrl[{args.precision}]" if framework == "lrl" and args.precision else framework
    out.update({"pair": pair.recipe, "framework": framework, "label": label, "seed": seed, "proc_s": proc_s,
                "load1": load1})
    return out


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


HEADER = (f"{'framework':<16} {'seed':>4} {'frames':>8} {'train_s':>8} {'fit_s':>7} {'call_s':>7} {'proc_s':>7} "
          f"{'eval_s':>6} {'load1':>5}   return mean ± std")


def print_row(r: dict[str, Any]) -> None:
    print(f"{r['label']:<16} {r['seed']:>4} {r['frames']:>8} {r['train_s']:>8.1f} {r['fit_s']:>7.1f} "
          f"{r['call_s']:>7.1f} {r['proc_s']:>7.1f} {r['eval_s']:>6.1f} {r['load1']:>5.1f}   "
          f"{r['return_mean']:6.1f} ± {r['return_std']:5.1f}", flush=True)


def summarize(runs: list[dict[str, Any]], frames: int, bar: float) -> dict[str, Any]:
    summary: dict[str, Any] = {"frames": frames, "bar": bar, "frameworks": {}}
    for label in dict.fromkeys(r["label"] for r in runs):
        rs = [r for r in runs if r["label"] == label]
        summary["frameworks"][label] = {
            "runs": len(rs),
            "median_train_s": _median([r["train_s"] for r in rs]),
            "median_fit_s": _median([r["fit_s"] for r in rs]),
            "median_call_s": _median([r["call_s"] for r in rs]),
            "median_proc_s": _median([r["proc_s"] for r in rs]),
            "median_fps": _median([r["frames"] / r["train_s"] for r in rs]),
            "mean_return": statistics.fmean(r["return_mean"] for r in rs),
            "returns_per_seed": [r["return_mean"] for r in rs],
            "solved": sum(r["return_mean"] >= bar for r in rs),
        }
    lrl = {r["seed"]: r for r in runs if r["framework"] == "lrl"}
    for peer, suffix in (("sb3", ""), ("ref", "_ref")):
        other = {r["seed"]: r for r in runs if r["framework"] == peer}
        paired = sorted(set(lrl) & set(other))
        for key in ("train_s", "proc_s") if paired else ():
            ratios = [lrl[s][key] / other[s][key] for s in paired]
            summary[f"ratio_{key}{suffix}"] = {
                "per_seed": ratios, "median_of_ratios": _median(ratios),
                "ratio_of_medians": _median([lrl[s][key] for s in paired]) / _median([other[s][key] for s in paired]),
            }
    return summary


def print_summary(name: str, summary: dict[str, Any]) -> None:
    bar = summary["bar"]
    print(f"\nSummary {name} ({summary['frames']:,} frames, medians over seeds)")
    print(f"{'framework':<16} {'train_s':>8} {'fit_s':>7} {'call_s':>7} {'proc_s':>7} {'fps':>7} "
          f"{'mean return':>12} {f'solved(>={bar:g})':>14}")
    for label, s in summary["frameworks"].items():
        print(f"{label:<16} {s['median_train_s']:>8.1f} {s['median_fit_s']:>7.1f} {s['median_call_s']:>7.1f} "
              f"{s['median_proc_s']:>7.1f} {s['median_fps']:>7.0f} {s['mean_return']:>12.1f} "
              f"{s['solved']:>7d}/{s['runs']}")
    for peer, suffix in (("SB3", ""), ("ref", "_ref")):
        for key in ("train_s", "proc_s"):
            ratio = summary.get(f"ratio_{key}{suffix}")
            if ratio:
                per_seed = ", ".join(f"{x:.2f}" for x in ratio["per_seed"])
                print(f"lrl/{peer} {key}: median of per-seed ratios {ratio['median_of_ratios']:.2f}, "
                      f"ratio of medians {ratio['ratio_of_medians']:.2f}  (per seed: {per_seed})")


def list_pairs() -> None:
    for name, pair in PAIRS.items():
        try:
            kwargs = pair.sb3_kwargs(resolve(pair))
        except (FileNotFoundError, MappingError) as err:
            print(f"{name} <-> {pair.sb3_class}: not comparable here ({err})")
            continue
        print(f"{name} <-> {pair.sb3_class} (bar {pair.bar:g}):")
        for key, value in kwargs.items():
            print(f"    {key} = {value!r}")


def driver_main(args: argparse.Namespace) -> int:
    frameworks = [args.only] if args.only else list(FRAMEWORKS)
    if args.jobs > 1:  # inherited by every worker: one core each
        os.environ.update(LRL_NUM_THREADS="1", OMP_NUM_THREADS="1")
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="lrl-vs-sb3-"))
    work.mkdir(parents=True, exist_ok=True)
    work = work.resolve()
    uri = f"sqlite:///{work / 'mlflow.db'}"
    selected: list[tuple[Pair, dict[str, Any]]] = []
    skipped: dict[str, str] = {}
    for name in args.pairs or list(PAIRS):
        pair = PAIRS[name]
        try:
            recipe = resolve(pair)
        except FileNotFoundError as err:
            skipped[name] = f"recipe not in this checkout ({err})"
            continue
        except MappingError as err:
            skipped[name] = f"hyperparameters cannot be mapped to {pair.sb3_class}: {err}"
            continue
        try:
            _check_frames(recipe, args.frames or recipe["budget"]["frames"])
        except MappingError as err:
            skipped[name] = f"cannot be compared at this budget: {err}"
            continue
        selected.append((pair, recipe))
    for name, why in skipped.items():
        print(f"SKIPPED {name}: {why}", flush=True)
    if "lrl" in frameworks and selected:
        _init_tracking(work, uri)
    print(f"lrl vs Stable-Baselines3: {', '.join(p.recipe for p, _ in selected) or 'nothing to run'}; "
          f"{args.seeds} seed(s), {args.episodes} eval episodes (seeds {args.eval_seed}+i), cpu_count="
          f"{os.cpu_count()}, torch threads {_torch_threads()}; work dir {work}", flush=True)
    results: dict[str, Any] = {}
    versions: dict[str, str] = {}
    try:
        for pair, recipe in selected:
            frames = args.frames or recipe["budget"]["frames"]
            recipe_json = work / f"{pair.recipe.replace('/', '-')}.recipe.json"
            recipe_json.write_text(json.dumps(recipe))
            print(f"\n== {pair.recipe} (lrl) vs {pair.sb3_class} (SB3), {frames:,} frames, bar {pair.bar:g}")
            print(HEADER, flush=True)
            runs: list[dict[str, Any]] = []
            results[pair.recipe] = {"sb3_class": pair.sb3_class, "runs": runs}
            here = [f for f in frameworks if f != "ref" or pair.recipe in REFERENCES]
            jobs = [(framework, seed) for seed in range(args.seeds)
                    for framework in (here if seed % 2 == 0 else here[::-1])]
            # --jobs > 1: runs in parallel, one MLflow store per seed (SQLite serialises writers)
            uris = {seed: uri if args.jobs == 1 else _seed_store(work, seed) for seed in range(args.seeds)}
            with ThreadPoolExecutor(args.jobs) as pool:
                futures = [pool.submit(run_one, fw, pair, seed, frames, recipe_json, args, work, uris[seed])
                           for fw, seed in jobs]
                for future in as_completed(futures):
                    runs.append(future.result())
                    versions.update(runs[-1]["versions"])
                    print_row(runs[-1])
            runs.sort(key=lambda r: (r["seed"], r["framework"]))
            results[pair.recipe]["summary"] = summarize(runs, frames, pair.bar)
    finally:
        for name, res in results.items():
            if res["runs"]:
                res.setdefault("summary", summarize(res["runs"], res["runs"][0]["frames"], PAIRS[name].bar))
                print_summary(name, res["summary"])
        if versions:
            print("versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())))
        if args.json_out:
            payload = {"config": {k: v for k, v in vars(args).items() if k != "worker"},
                       "cpu_count": os.cpu_count(), "versions": versions, "pairs": results, "skipped": skipped}
            Path(args.json_out).write_text(json.dumps(payload, indent=2))
            print(f"results written to {args.json_out}")
        if not args.work_dir and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if any("cannot be" in why for why in skipped.values()) else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pairs", nargs="*", metavar="RECIPE", help=f"entries to run (default all: {', '.join(PAIRS)})")
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    p.add_argument("--frames", type=int, default=None, help="training frames per run (default: the recipe's budget)")
    p.add_argument("--episodes", type=int, default=20, help="deterministic evaluation episodes (default 20)")
    p.add_argument("--eval-seed", type=int, default=10_000, help="episode i is seeded eval_seed + i")
    p.add_argument("--only", choices=FRAMEWORKS, help="run one framework only")
    p.add_argument("--precision", help="lrl trainer.precision, e.g. bf16-mixed (SB3 always runs fp32)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where both frameworks train (lrl: trainer.accelerator=gpu; SB3: device='cuda')")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs in parallel (default 1: one after another); for many-core machines, one thread each")
    p.add_argument("--json-out", help="write all runs and the summaries to this JSON file")
    p.add_argument("--work-dir", help="keep run directories, logs and mlflow.db here (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the temporary work dir")
    p.add_argument("--list", action="store_true", help="print each entry's SB3 keyword arguments and exit")
    # internal: one training run in this subprocess
    p.add_argument("--worker", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    p.add_argument("--pair", help=argparse.SUPPRESS)
    p.add_argument("--recipe-json", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--run-dir", help=argparse.SUPPRESS)
    p.add_argument("--tracking-uri", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    unknown = [name for name in args.pairs if name not in PAIRS]
    if unknown:
        p.error(f"unknown entry {unknown[0]!r}; known: {', '.join(PAIRS)}")
    if args.seeds < 1 or args.episodes < 1 or args.jobs < 1 or (args.frames is not None and args.frames < 1):
        p.error("--seeds, --frames, --episodes and --jobs must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker_main(args)
        return 0
    if args.list:
        list_pairs()
        return 0
    return driver_main(args)


if __name__ == "__main__":
    sys.exit(main())
