"""Sources that learn in rounds: collect a round of episodes with the current learner in their own environment, turn
them into transitions, add those to an aggregate, train on the aggregate for ``steps_per_round`` gradient steps,
repeat (DAgger, Ross et al. 2011; hindsight relabelling builds on the same loop).

Subclasses fill in three hooks:

- :meth:`RoundsDataModule.initial_data`: transitions available before any round (demonstrations), or None;
- :meth:`RoundsDataModule.collect_round`: the episodes of round ``i`` (usually through :meth:`collect_episodes` with
  a step function of their own), or None to stop collecting (training then goes on over the aggregate);
- :meth:`RoundsDataModule.to_transitions`: a round's episodes → flat transition tensors (``observation``,
  ``action``, ``next/...``, as :func:`lrl.data.dataset.as_tensordict` reads them).

The aggregate only grows (D ← D ∪ D_π, never replaced): each round's transitions are one more chunk, earlier chunks
are never touched. Training draws shuffled minibatches from the concatenated chunks through an
:class:`~lrl.data.dataset.OfflineStream`, sharded by rank; a grown aggregate starts a new pass.

Episodes: each is seeded from (seed, round, episode index) alone (:func:`episode_seed`), and so is the generator its
step function draws from (:func:`episode_generator`; DAgger's β coin), so a round is reproducible from the learner's
weights. Under DDP episode ``j`` of a round is run by rank ``j mod W``; the episodes of all ranks are gathered, in
index order, so every rank adds the same chunk and trains on the same aggregate. A round starts every episode from
a reset and ends them all, so nothing of an environment outlives its round: the checkpoint needs no env state.

Exact resume at any step, mid-round included: the state (round index, phase, steps into the round, the stream's
position, the global RNGs the learner may sample from, the aggregate itself) is in every checkpoint. The aggregate is
kept in the checkpoint rather than a sidecar: for the sizes imitation runs reach (10⁵-10⁶ small transitions, a few
to a few hundred MB) it is one atomic file with nothing to keep in step beside it, and the rounds can be re-read
from ``<run_dir>/<name>/round-*`` where a subclass saves them.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np
import torch

from lrl.contract import Batch, ClockUnit, Consumes, Schedule, learner
from lrl.data.dataset import OfflineStream, as_tensordict
from lrl.data.env import env_fn
from lrl.data.ranked import BatchStream, RankedDataModule, distributed, gather
from lrl.data.rng import rng_state, set_rng_state, trainer_device
from lrl.errors import RecipeError
from lrl.recipe.schema import EnvConfig
from lrl.spec import GOAL_KEYS, Spec, policy_input

log = logging.getLogger(__name__)

Phase = Literal["collect", "train"]
# obs batch (raw: an array, or a dict of arrays for goal observations), one generator per episode in the batch ->
# (actions to execute [k, ...], per-step records to keep {name: [k, ...]})
StepFn = Callable[[Any, list[np.random.Generator]], tuple[np.ndarray, dict[str, np.ndarray]]]


@runtime_checkable
class Acting(Protocol):
    """What a rounds source asks of the learner beyond :class:`lrl.contract.Learner`: actions for a batch of policy
    inputs (every :class:`lrl.algos.base.RLModule` has it: evaluation and ``lrl.load_policy`` use it too)."""

    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor: ...


def episode_seed(seed: int, round_index: int, episode: int) -> int:
    """The env reset seed of episode ``episode`` of round ``round_index``: a function of the three alone, so a round
    is the same on any rank and after any resume."""
    return int(np.random.SeedSequence([seed, round_index, episode]).generate_state(1)[0])


def episode_generator(seed: int, round_index: int, episode: int) -> np.random.Generator:
    """The generator an episode's step function draws from (DAgger's β coin): independent of the env's seed."""
    return np.random.default_rng(np.random.SeedSequence([seed, round_index, episode, 1]))


@dataclass
class Episode:
    """One episode of a round. ``observations`` has T+1 rows (the last is the observation after the last step), or
    for goal observations is a dict of such arrays; the rest have T rows."""

    index: int  # its index within its round (global across ranks)
    observations: np.ndarray | dict[str, np.ndarray]
    actions: np.ndarray  # executed
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    records: dict[str, np.ndarray] = field(default_factory=dict)  # the step function's per-step records
    cut: bool = False  # stopped by the round's step cap, not by the environment (its last step is marked truncated)

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def total_reward(self) -> float:
        return float(np.sum(self.rewards))

    def observation_rows(self, rows: slice) -> dict[str, np.ndarray]:
        """The observation keys of a transition (``observation``, or the goal parts) at ``rows``."""
        if isinstance(self.observations, dict):
            return {k: self.observations[k][rows] for k in GOAL_KEYS}
        return {"observation": self.observations[rows]}


def _stack(obs: list[Any]) -> Any:
    if isinstance(obs[0], dict):
        return {k: np.stack([np.asarray(o[k], np.float32) for o in obs]) for k in obs[0]}
    return np.stack([np.asarray(o, np.float32) for o in obs])


@dataclass
class _Open:
    index: int
    rng: np.random.Generator
    obs: list[Any]
    actions: list[np.ndarray] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    term: list[bool] = field(default_factory=list)
    trunc: list[bool] = field(default_factory=list)
    records: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def close(self, cut: bool) -> Episode | None:
        if not self.actions:
            return None  # cut before its first step: it never happened
        trunc = np.asarray(self.trunc, bool)
        if cut:
            trunc[-1] = True
        return Episode(self.index, _stack(self.obs), np.stack(self.actions), np.asarray(self.rewards, np.float64),
                       np.asarray(self.term, bool), trunc, {k: np.stack(v) for k, v in self.records.items()}, cut)


def run_episodes(envs: Sequence[gym.Env], spec: Spec, seed: int, round_index: int, indices: Sequence[int],
                 step: StepFn, cap: int | None = None) -> list[Episode]:
    """Run the episodes ``indices`` of round ``round_index`` on ``envs`` (as many at once as there are envs, each
    started from its own :func:`episode_seed`), acting with ``step``. ``cap``: at most this many steps in all; when
    it is reached every open episode is cut there (and episodes not yet started are not run), so a label budget is
    met exactly; when fewer steps than open episodes remain, the lowest-indexed episodes take them. Returns the
    episodes that took at least one step, in index order."""
    pending = deque(indices if cap is None or cap > 0 else ())
    running: dict[int, _Open] = {}  # env slot -> its open episode
    done: list[Episode] = []
    low = np.asarray(spec.action_low, np.float32) if spec.action_low else None
    high = np.asarray(spec.action_high, np.float32) if spec.action_high else None

    def start(slot: int) -> None:
        if pending:
            j = pending.popleft()
            obs, _ = envs[slot].reset(seed=episode_seed(seed, round_index, j))
            running[slot] = _Open(j, episode_generator(seed, round_index, j), [obs])

    def finish(slot: int, cut: bool) -> None:
        episode = running.pop(slot).close(cut)
        if episode is not None:
            done.append(episode)

    for s in range(len(envs)):
        start(s)
    taken = 0
    while running:
        active = sorted(running, key=lambda s: running[s].index)
        if cap is not None and taken + len(active) > cap:  # fewer steps left than open episodes
            pending.clear()
            for s in active[cap - taken:]:
                finish(s, cut=True)
            active = active[:cap - taken]
        opens = [running[s] for s in active]
        actions, records = step(_stack([o.obs[-1] for o in opens]), [o.rng for o in opens])
        actions = np.asarray(actions)
        if len(actions) != len(active):
            raise RuntimeError(f"step function returned {len(actions)} actions for {len(active)} observations")
        executed = np.clip(actions, low, high) if low is not None else actions
        for j, (s, o) in enumerate(zip(active, opens, strict=True)):
            obs, reward, term, trunc, _ = envs[s].step(executed[j])
            o.obs.append(obs)
            o.actions.append(actions[j])
            o.rewards.append(float(reward))
            o.term.append(bool(term))
            o.trunc.append(bool(trunc))
            for k, v in records.items():
                o.records.setdefault(k, []).append(np.asarray(v[j]))
            if term or trunc:
                finish(s, cut=False)
                start(s)
        taken += len(active)
        if cap is not None and taken >= cap:
            pending.clear()
            for s in list(running):
                finish(s, cut=True)
    return sorted(done, key=lambda e: e.index)


def transitions(episodes: Sequence[Episode], action: Callable[[Episode], np.ndarray] | None = None,
                spec: Spec | None = None) -> dict[str, torch.Tensor]:
    """Flat transition tensors of ``episodes`` in order: ``observation`` (or the goal parts), ``action`` (the executed
    one, or ``action(episode)``: DAgger's expert labels), ``next/observation`` (...), ``next/reward``,
    ``next/terminated``, ``next/truncated``, ``next/done``. ``spec`` fixes the action dtype (int64 for discrete,
    float32 otherwise)."""
    if not episodes:
        return {}
    parts: dict[str, list[np.ndarray]] = {}

    def put(key: str, value: np.ndarray) -> None:
        parts.setdefault(key, []).append(value)

    for ep in episodes:
        n = len(ep)
        for k, v in ep.observation_rows(slice(0, n)).items():
            put(k, v)
        for k, v in ep.observation_rows(slice(1, n + 1)).items():
            put(f"next/{k}", v)
        put("action", np.asarray(action(ep) if action is not None else ep.actions))
        put("next/reward", ep.rewards.astype(np.float32))
        put("next/terminated", ep.terminations)
        put("next/truncated", ep.truncations)
        put("next/done", ep.terminations | ep.truncations)
    out = {k: torch.from_numpy(np.concatenate(v)) for k, v in parts.items()}
    if spec is not None:
        out["action"] = out["action"].long() if spec.action_kind == "discrete" else out["action"].float()
    return out


class RoundsDataModule(RankedDataModule):
    """Base of the sources that alternate collecting a round and training on the aggregate (module docstring).

    The clock counts gradient steps (``steps``) or samples (``samples`` = steps × ``batch_size``); every step is a
    boundary, as for the offline source, because the state says exactly what comes next at any step.
    """

    clock_units: ClassVar[tuple[ClockUnit, ...]] = ("steps", "samples")
    needs_env: ClassVar[bool] = True
    source_name: ClassVar[str] = "rounds"  # metrics prefix and the folder under the run directory its rounds may go to

    def __init__(self, *, env: EnvConfig, spec: Spec, seed: int, budget: int, clock_unit: ClockUnit,
                 batch_size: int, steps_per_round: int, deterministic: bool = True,
                 streams: dict[str, Any] | None = None) -> None:
        """
        Args:
            batch_size: samples per gradient step, global across ranks.
            steps_per_round: gradient steps on the aggregate between two rounds of collection.
            deterministic: the learner acts with its deterministic action (``act(obs, deterministic=True)``); false:
                it samples, from torch's global generator (which every checkpoint carries).
            streams: further named offline streams, ``{name: {path, batch_size}}``.
        """
        super().__init__(seed=seed, budget=budget, clock_unit=clock_unit, streams=streams)
        self.env_cfg, self.spec = env, spec
        self.batch_size, self.steps_per_round, self.deterministic = batch_size, steps_per_round, deterministic
        self.main = OfflineStream(name="main", seed=seed, batch_size=batch_size, loader=self._aggregate)
        self.chunks: list[dict[str, torch.Tensor]] = []  # the aggregate: one chunk per round, never modified
        self.round = 0  # the index of the next round
        self.phase: Phase = "collect"
        self.collecting = True  # False once collect_round said there is nothing more to collect
        self.steps = 0  # gradient steps, this run
        self.steps_in_round = 0
        self.envs: gym.vector.SyncVectorEnv | None = None
        self.completed: deque[tuple[float, int]] = deque(maxlen=100)  # (return, length) of whole collected episodes
        self._device = torch.device("cpu")

    # --- hooks ----------------------------------------------------------------------------------------------------
    def initial_data(self) -> dict[str, torch.Tensor] | None:
        """Transitions to train on before the first round (demonstrations); None: the first round collects."""
        return None

    def collect_round(self, round_index: int) -> list[Episode] | None:
        """The episodes of round ``round_index`` (all ranks', in index order: :meth:`collect_episodes`), or None
        when there is nothing more to collect."""
        raise NotImplementedError

    def to_transitions(self, episodes: list[Episode]) -> dict[str, torch.Tensor]:
        """A round's episodes as flat transition tensors (:func:`transitions`)."""
        return transitions(episodes, spec=self.spec)

    def on_round(self, round_index: int, episodes: list[Episode], chunk: dict[str, torch.Tensor]) -> dict[str, float]:
        """After round ``round_index`` was added to the aggregate (every rank; save it, ...): metrics to log under
        ``<name>/``."""
        return {}

    # --- helpers for the hooks ------------------------------------------------------------------------------------
    def collect_episodes(self, round_index: int, count: int, step: StepFn, cap: int | None = None) -> list[Episode]:
        """Episodes ``0 .. count-1`` of a round, this rank running every ``W``-th one on its envs, gathered from all
        ranks in index order. ``cap``: at most this many steps in all ranks together (split among the ranks that have
        episodes; a rank whose episodes end early leaves the rest of its share to the next round)."""
        assert self.envs is not None, "collect_episodes before the source was set up"
        world, rank = self.world_size, self.rank
        mine = list(range(rank, count, world))
        share = None
        if cap is not None:
            runners = min(world, count)
            share = cap // runners + (rank < cap % runners) if rank < runners else 0
        local = run_episodes(self.envs.envs, self.spec, self.seed, round_index, mine, step, share) if mine else []
        if distributed():
            local = sorted((e for part in gather(local) for e in part), key=lambda e: e.index)
        return local

    def learner_actions(self, obs: Any) -> np.ndarray:
        """The learner's actions for a batch of raw observations (goal parts concatenated by
        :func:`lrl.spec.policy_input`; imitation normalises nothing), without gradients."""
        module = learner(self.trainer)
        if not isinstance(module, Acting):
            raise RuntimeError(f"lrl: the module ({type(module).__name__}) has no act(obs, deterministic): a rounds "
                               "source cannot let it act")
        x = torch.as_tensor(np.asarray(policy_input(obs), np.float32), device=self._device)
        training = getattr(module, "training", False)
        if isinstance(module, torch.nn.Module):
            module.eval()  # dropout / batch norm act as at evaluation
        try:
            with torch.no_grad():
                out = module.act(x, deterministic=self.deterministic)
        finally:
            if isinstance(module, torch.nn.Module):
                module.train(training)
        return out.detach().cpu().numpy()

    @property
    def run_dir(self) -> Any:
        """The run directory (``trainer.default_root_dir``), or None outside a trainer."""
        trainer = self.trainer
        return None if trainer is None else trainer.default_root_dir

    # --- declarations ---------------------------------------------------------------------------------------------
    @classmethod
    def check_args(cls, args: dict[str, Any], env: EnvConfig | None, schedule: Schedule, consumes: Consumes,
                   world: int | None, budget: int | None = None) -> None:
        super().check_args(args, env, schedule, consumes, world, budget)
        if env is not None and env.vectorization != "sync":
            raise RecipeError(f"env.vectorization={env.vectorization}: data.name={cls.source_name} steps its envs one "
                              "by one (each episode from its own seed); use sync")
        if world and args["batch_size"] % world:
            raise RecipeError(f"data.batch_size={args['batch_size']} must be divisible by the number of processes "
                              f"({world})")

    # --- set-up ---------------------------------------------------------------------------------------------------
    def _built(self) -> bool:
        return self.envs is not None

    def train_dataloader(self) -> BatchStream:
        trainer = self.trainer
        assert trainer is not None
        self.world_size, self.rank = trainer.world_size, trainer.global_rank
        self._device = trainer.lightning_module.device
        self._setup_streams(self._device)
        if self.envs is None:
            local = self.env_cfg.num_envs // self.world_size
            self.envs = gym.vector.SyncVectorEnv([env_fn(self.env_cfg) for _ in range(local)])
            if self._pending_state is None and not self.chunks:
                self._start()
            self._restore_pending()
        return BatchStream(self)

    def _start(self) -> None:
        """A fresh run: the initial data, if any, is round 0 and the first collection is round 1."""
        first = self.initial_data()
        if first is not None:
            self._add(first)
            self.round, self.phase = 1, "train"

    def teardown(self, stage: str) -> None:
        self.final_clock = self.clock
        if self.envs is not None:
            self.envs.close()
            self.envs = None

    # --- the aggregate --------------------------------------------------------------------------------------------
    def _aggregate(self) -> dict[str, torch.Tensor]:
        keys = self.chunks[0].keys()
        return {k: torch.cat([c[k] for c in self.chunks]) for k in keys}

    def __len__(self) -> int:
        return sum(len(next(iter(c.values()))) for c in self.chunks)

    def _add(self, chunk: dict[str, torch.Tensor]) -> None:
        """D ← D ∪ chunk; the stream's next minibatch begins a pass over the grown aggregate."""
        if self.chunks and set(chunk) != set(self.chunks[0]):
            raise RuntimeError(f"round {self.round}: transitions with keys {sorted(chunk)}, the aggregate has "
                               f"{sorted(self.chunks[0])}")
        self.chunks.append({k: v.detach().cpu() for k, v in chunk.items()})
        self._refresh_stream()

    def _refresh_stream(self) -> None:
        size = len(self)
        if size < self.batch_size:
            raise RecipeError(f"data.batch_size={self.batch_size} is larger than the aggregate after round "
                              f"{self.round} ({size} samples); lower data.batch_size or collect more per round")
        if self.main.data is None:
            self.main.setup(self.rank, self.world_size, self._device)
        else:
            self.main.replace_data(as_tensordict(self._aggregate()).to(self._device))

    # --- DataSource -----------------------------------------------------------------------------------------------
    @property
    def clock(self) -> int:
        return self.steps * (self.batch_size if self.clock_unit == "samples" else 1)

    @property
    def at_boundary(self) -> bool:
        return True  # the state is exact after every step

    def recent_episodes(self) -> list[tuple[float, int]]:
        return list(self.completed)

    # --- batches --------------------------------------------------------------------------------------------------
    def _collect(self) -> list[tuple[float, int]]:
        episodes = self.collect_round(self.round) if self.collecting else None
        self.phase = "train"
        if episodes is None:
            self.collecting = False
            if not self.chunks:
                raise RecipeError(f"data.name={self.source_name}: nothing to train on (the first round collected "
                                  "nothing)")
            return []
        chunk = self.to_transitions(episodes)
        if chunk:
            self._add(chunk)
        metrics = self.on_round(self.round, episodes, chunk)
        finished = [(e.total_reward, len(e)) for e in episodes if not e.cut]
        self.completed.extend(finished)
        self.round += 1
        self.steps_in_round = 0
        self._log({f"{self.source_name}/{k}": v for k, v in metrics.items()})
        return finished

    def _log(self, metrics: dict[str, float]) -> None:
        trainer = self.trainer
        if metrics and trainer is not None and trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=self.clock)

    def next_batch(self) -> Batch:
        episodes = self._collect() if self.phase == "collect" else []
        first = self.main.at_boundary
        td = self.main.next()
        self.steps += 1
        self.steps_in_round += 1
        if self.collecting and self.steps_in_round >= self.steps_per_round:
            self.phase = "collect"
        return Batch(td, self.clock, self._progress_remaining(), self.round - 1, first, episodes)

    # --- checkpoint state -----------------------------------------------------------------------------------------
    def _rank_state(self) -> dict[str, Any]:
        return {"main": self.main.state_dict(), "round": self.round, "phase": self.phase,
                "collecting": self.collecting, "steps": self.steps, "steps_in_round": self.steps_in_round,
                "completed": list(self.completed), "rng": rng_state(trainer_device(self))}

    def _shared_state(self) -> dict[str, Any]:
        return {"aggregate": self.chunks}  # the same on every rank: stored once

    def _load_rank_state(self, state: dict[str, Any]) -> None:
        self.chunks = list(state["aggregate"])
        self.main.data = None
        if self.chunks:
            self._refresh_stream()
            self.main.load_state_dict(state["main"])
        self.round, self.phase, self.collecting = state["round"], state["phase"], state["collecting"]
        self.steps, self.steps_in_round = state["steps"], state["steps_in_round"]
        self.completed.clear()
        self.completed.extend(state["completed"])
        set_rng_state(state["rng"], trainer_device(self))
