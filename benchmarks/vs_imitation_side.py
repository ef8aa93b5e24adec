"""The `imitation` library's side of ``benchmarks/vs_imitation.py``, and the numpy expert both sides share.

This file runs under the benchmark's own virtual environment (``benchmarks/.venv-imitation``: imitation 1.0.1 pins
gymnasium 0.29 and Stable-Baselines3 2.2, lrl needs gymnasium 1.x), so it imports nothing from lrl; the driver
imports only :func:`load_expert` / :func:`expert_actions` from it, to check the export against lrl's own policy.

The expert travels as an ``.npz`` of plain arrays (written by ``vs_imitation.export_expert``):

- ``obs_mean``, ``obs_var``, ``clip_obs``: the run's observation normalisation (absent: none),
- ``W0, b0, W1, b1, ...``: the policy MLP's linear layers in order (``W`` is ``[out, in]``, as torch stores it),
  ``act0, act1, ...``: the activation after each hidden layer (``tanh``, ``relu``, ``elu``, ``gelu``),
- ``out``: what the last layer's output means: ``argmax`` (a softmax policy's mode), ``tanh`` (``loc + scale ·
  tanh(x)``: SAC's squashed Gaussian mode, TD3's actor) or ``identity`` (a Gaussian's mean), then clipped to
  ``low``/``high`` where the action space is a box, as lrl's ``Policy`` does.

The imitation workers (``bc``, ``dagger``) read a JSON job, train with imitation's ``bc.BC`` or
``dagger.SimpleDAggerTrainer`` and evaluate the learned policy exactly as lrl's evaluation does (episode ``i`` on
its own env seeded ``eval_seed + i``, deterministic actions, run to termination or the time limit).

    python benchmarks/vs_imitation_side.py JOB.json RESULT.json
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


# --- the numpy expert (no torch, no lrl) ---------------------------------------------------------------------------
def load_expert(path: str | Path) -> dict[str, Any]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _activation(name: str, x: np.ndarray) -> np.ndarray:
    if name == "tanh":
        return np.tanh(x)
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "elu":
        return np.where(x > 0, x, np.expm1(np.minimum(x, 0.0)))
    if name == "gelu":  # torch's exact GELU: x Φ(x)
        erf = np.vectorize(math.erf)
        return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))
    raise ValueError(f"unknown activation {name!r}")


def expert_actions(params: dict[str, Any], obs: np.ndarray) -> np.ndarray:
    """The expert's deterministic actions for a batch of raw observations ``[B, obs_dim]`` (float64 inside)."""
    x = np.asarray(obs, np.float64).reshape(len(obs), -1)
    if "obs_mean" in params:
        x = (x - params["obs_mean"]) / np.sqrt(params["obs_var"] + 1e-8)
        x = np.clip(x, -float(params["clip_obs"]), float(params["clip_obs"]))
    n = int(params["n_layers"])
    for i in range(n):
        x = x @ params[f"W{i}"].T.astype(np.float64) + params[f"b{i}"].astype(np.float64)
        if i < n - 1:
            x = _activation(str(params[f"act{i}"]), x)
    out = str(params["out"])
    if out == "argmax":
        return x.argmax(-1)
    if out == "tanh":
        x = params["loc"] + params["scale"] * np.tanh(x)
    elif out != "identity":
        raise ValueError(f"unknown output kind {out!r}")
    if "low" in params:
        x = np.clip(x, params["low"], params["high"])
    return x.astype(np.float32)


# --- the imitation side (its own venv) -----------------------------------------------------------------------------
def _numpy_expert_policy(params: dict[str, Any], observation_space: Any, action_space: Any) -> Any:
    """The npz expert as a Stable-Baselines3 ``BasePolicy``: what imitation's DAgger trainers take as the expert."""
    import torch as th
    from stable_baselines3.common.policies import BasePolicy

    class NumpyExpert(BasePolicy):
        def __init__(self) -> None:
            super().__init__(observation_space, action_space)

        def forward(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - BasePolicy wants one
            raise NotImplementedError

        def _predict(self, observation: Any, deterministic: bool = False) -> th.Tensor:
            if not isinstance(observation, th.Tensor):
                raise TypeError("the exported expert takes box observations only")
            actions = expert_actions(params, observation.detach().cpu().numpy())
            return th.as_tensor(actions)

    return NumpyExpert()


def _policy(job: dict[str, Any], venv: Any) -> Any:
    """An SB3 ``ActorCriticPolicy`` whose actor is lrl's ``PolicyNet``: same hidden sizes and activation, orthogonal
    init (√2 hidden, 0.01 output) when lrl's ``ortho_init``, Gaussian head with a state-independent log-std started
    at ``log_std_init``. The value branch is one linear layer on the observation (``vf=[]``): BC never trains it."""
    import torch as th
    from stable_baselines3.common.policies import ActorCriticPolicy

    acts = {"tanh": th.nn.Tanh, "relu": th.nn.ReLU, "elu": th.nn.ELU, "gelu": th.nn.GELU}
    return ActorCriticPolicy(
        observation_space=venv.observation_space, action_space=venv.action_space,
        lr_schedule=lambda _: float(job["lr"]),  # the policy's own optimiser is unused: BC builds its own
        net_arch={"pi": list(job["hidden"]), "vf": []}, activation_fn=acts[job["activation"]],
        ortho_init=bool(job["ortho_init"]), log_std_init=float(job["log_std_init"]),
    )


def _bc_trainer(job: dict[str, Any], venv: Any, rng: np.random.Generator, demonstrations: Any) -> Any:
    import torch as th
    from imitation.algorithms import bc

    return bc.BC(
        observation_space=venv.observation_space, action_space=venv.action_space, rng=rng,
        policy=_policy(job, venv), demonstrations=demonstrations, batch_size=int(job["batch_size"]),
        optimizer_cls=th.optim.Adam, optimizer_kwargs={"lr": float(job["lr"]), "eps": float(job["adam_eps"])},
        ent_weight=float(job["ent_weight"]), l2_weight=float(job["l2_weight"]), device="cpu",
    )


def _evaluate(policy: Any, env_id: str, episodes: int, eval_seed: int) -> list[float]:
    import gymnasium as gym

    returns: list[float] = []
    for i in range(episodes):
        env = gym.make(env_id)
        obs, _ = env.reset(seed=eval_seed + i)
        total, done = 0.0, False
        while not done:
            action, _ = policy.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        env.close()
        returns.append(total)
    return returns


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {f"imitation-side {n}": version(n) for n in ("imitation", "stable_baselines3", "gymnasium", "torch")}


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    import torch as th

    th.set_num_threads(int(job["threads"]))
    # every import before the clock starts (as lrl's are, before its MLflow run starts)
    from imitation.algorithms import bc, dagger  # noqa: F401
    from imitation.data import types
    from imitation.util.util import make_vec_env
    from stable_baselines3.common.policies import ActorCriticPolicy  # noqa: F401

    out: dict[str, Any] = {"torch_threads": th.get_num_threads(), "versions": _versions()}
    if job["method"] == "expert":  # the exported expert on this side's environment: a check of the export
        returns = _evaluate(_ExpertPredict(load_expert(job["expert"])), job["env_id"], int(job["episodes"]),
                            int(job["eval_seed"]))
        return dict(out, return_mean=float(np.mean(returns)), returns=returns)

    th.manual_seed(int(job["seed"]))
    rng = np.random.default_rng(int(job["seed"]))
    t0 = time.perf_counter()
    venv = make_vec_env(job["env_id"], n_envs=1, rng=rng, parallel=False)
    steps = [0]

    def count() -> None:
        steps[0] += 1

    if job["method"] == "bc":
        with np.load(job["demos"]) as z:
            obs, acts = z["obs"], z["acts"]
            next_obs = z["next_obs"] if "next_obs" in z.files else np.zeros_like(obs)  # BC never reads them
        demos = types.Transitions(obs=obs, acts=acts, infos=np.array([{}] * len(obs)), next_obs=next_obs,
                                  dones=np.zeros(len(obs), bool))
        trainer = _bc_trainer(job, venv, rng, demos)
        t_fit = time.perf_counter()
        trainer.train(n_batches=int(job["gradient_steps"]), on_batch_end=count, log_interval=10**9,
                      progress_bar=False)
        t1 = time.perf_counter()
        labels = len(obs)
    elif job["method"] == "dagger":
        import tempfile

        expert = _numpy_expert_policy(load_expert(job["expert"]), venv.observation_space, venv.action_space)
        trainer = _bc_trainer(job, venv, rng, None)
        quiet = {"on_batch_end": count, "log_rollouts_venv": None, "progress_bar": False, "log_interval": 10**9}
        with tempfile.TemporaryDirectory() as scratch:
            cls = _mode_dagger_class() if job["deterministic"] else dagger.SimpleDAggerTrainer
            dt = cls(venv=venv, scratch_dir=scratch, expert_policy=expert, bc_trainer=trainer, rng=rng,
                     beta_schedule=_BetaSchedule(**job["beta"]))
            t_fit = time.perf_counter()
            dt.train(total_timesteps=int(job["label_budget"]),
                     rollout_round_min_episodes=int(job["round_min_episodes"]),
                     rollout_round_min_timesteps=int(job["round_min_timesteps"]),
                     bc_train_kwargs=dict(job["bc_train_kwargs"], **quiet))
            rest = int(job["total_gradient_steps"]) - steps[0]
            if rest > 0:  # lrl trains on over the final aggregate until its budget of gradient steps
                trainer.train(n_batches=rest, **quiet)
            t1 = time.perf_counter()
            labels = sum(len(traj.acts) for traj in dt._all_demos)  # every step of every round is labelled
            out["rounds"] = int(dt.round_num)
    else:
        raise ValueError(f"unknown method {job['method']!r}")
    venv.close()
    t_eval = time.perf_counter()
    returns = _evaluate(trainer.policy, job["env_id"], int(job["episodes"]), int(job["eval_seed"]))
    eval_s = time.perf_counter() - t_eval
    arr = np.asarray(returns)
    return dict(out, train_s=t1 - t0, fit_s=t1 - t_fit, eval_s=eval_s, labels=int(labels), gradient_steps=steps[0],
                return_mean=float(arr.mean()), return_std=float(arr.std()), returns=returns)


class _BetaSchedule:
    """β_i of lrl's dagger source: 1 in round 0 (the expert alone: no demonstrations given), then ``constant`` β,
    ``linear`` β·max(0, 1 − i/rounds) or ``exponential`` β·decay^i."""

    def __init__(self, schedule: str, beta: float, decay: float, rounds: int) -> None:
        self.schedule, self.beta, self.decay, self.rounds = schedule, beta, decay, rounds

    def __call__(self, round_num: int) -> float:
        if round_num == 0:
            return 1.0
        if self.schedule == "constant":
            return self.beta
        if self.schedule == "linear":
            return self.beta * max(0.0, 1.0 - round_num / self.rounds)
        return self.beta * self.decay**round_num


def _mode_dagger_class() -> Any:
    from imitation.algorithms import dagger

    class ModeDAgger(dagger.SimpleDAggerTrainer):
        """imitation's DAgger with the learner acting by its mode (its default samples from the policy)."""

        def create_trajectory_collector(self) -> Any:
            collector = super().create_trajectory_collector()
            collector.get_robot_acts = lambda obs: self.bc_trainer.policy.predict(obs, deterministic=True)[0]
            return collector

    return ModeDAgger


class _ExpertPredict:
    """``predict`` of the numpy expert, for :func:`_evaluate` (one observation at a time)."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    def predict(self, obs: np.ndarray, deterministic: bool = True) -> tuple[Any, None]:
        action = expert_actions(self.params, np.asarray(obs)[None])[0]
        return (int(action) if action.ndim == 0 else action), None


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    job = json.loads(Path(argv[0]).read_text())
    result = run_job(job)
    tmp = Path(argv[1]).with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
