"""DAgger as a data source (Ross, Gordon & Bagnell 2011; Yin §2.1, Algorithm 1; Rossi §13.2): the update
is behavioural cloning's, unchanged; what DAgger changes is the data it clones from.

1. train π_θ on the expert data D (given demonstrations, or round 0: episodes of the expert itself);
2. run π_θ to get observations D_π (a round of ``episodes_per_round`` episodes);
3. ask the expert to label D_π with its actions;
4. aggregate, D ← D ∪ D_π (never replace), train ``steps_per_round`` gradient steps on D, and repeat.

The β-mixture (Ross et al. 2011): in round i each step executes the expert's action with probability β_i and the
learner's otherwise; the expert labels every visited state whichever acted. β_i follows ``beta_schedule``:
``constant`` (β), ``linear`` (β·max(0, 1 − i/``beta_rounds``)) or ``exponential`` (β·``beta_decay``^i, Ross's p^i).
Round 0 without demonstrations is the expert alone (β₀ = 1): the untrained learner has nothing to show yet. Ross
reports β_i = 𝟙[i = 0] (``constant`` with β = 0, the default) often works best.

Why it helps: cloning the expert's state distribution leaves the learner's own mistakes unlabelled, so errors
compound, O(εT²) over a horizon T; training on the states the learner visits bounds it by O(εT) (Ross et al. 2011;
Yin §2.1).

``label_budget`` caps the expert labels this run asks for (the initial demonstrations are not counted): collection
stops exactly there (the last round is cut mid-episode, its cut step marked truncated) and training goes on over
the aggregate until the run's budget. Each collected round is saved as a Minari dataset under the run directory,
``<run_dir>/dagger/round-NNN-v0`` (``save_rounds``; the run directory is a Minari store holding the ids
``dagger/round-NNN-v0``; the actions are the expert's labels, not the executed mixture's).
See docs/dagger.md.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from lrl.contract import ROLLOUT_KEYS, ClockUnit, Consumes, Schedule
from lrl.data.expert import Expert, load_expert
from lrl.data.rounds import Episode, RoundsDataModule, StepFn, episode_seed, transitions
from lrl.errors import RecipeError
from lrl.recipe.schema import EnvConfig
from lrl.spec import GOAL_KEYS, Spec, require_same

log = logging.getLogger(__name__)

BetaSchedule = Literal["constant", "linear", "exponential"]


def beta_at(round_index: int, schedule: BetaSchedule, beta: float, decay: float, rounds: int) -> float:
    """β_i, the probability that a step of round ``round_index`` executes the expert's action."""
    if schedule == "constant":
        return beta
    if schedule == "linear":
        return beta * max(0.0, 1.0 - round_index / rounds)
    return beta * decay**round_index


def expert_labels(expert: Expert, obs: Any, spec: Spec, count: int) -> np.ndarray:
    """The expert's actions for a batch of ``count`` raw observations, as int64 indices ``[count]`` (discrete) or
    float32 ``[count, action_dim]``; any other shape is one line naming the expert."""
    labels = np.asarray(expert(obs))
    want: tuple[int, ...] = (count,) if spec.action_kind == "discrete" else (count, spec.action_dim)
    if labels.shape != want and labels.size == int(np.prod(want)):
        labels = labels.reshape(want)  # (count, 1) for discrete actions, (count,) for one continuous dimension
    if labels.shape != want:
        raise RecipeError(f"data.expert={expert.ref}: returned actions of shape {labels.shape} for {count} "
                          f"observations; expected {want}")
    return labels.astype(np.int64 if spec.action_kind == "discrete" else np.float32)


class DaggerDataModule(RoundsDataModule):
    """DAgger's aggregate as the run's data (module docstring); the learner is any algorithm that consumes
    ``dagger`` (``bc``)."""

    source_name: ClassVar[str] = "dagger"
    provides: ClassVar[tuple[str, ...]] = ROLLOUT_KEYS  # ``action`` is the expert's label

    def __init__(self, *, env: EnvConfig, spec: Spec, seed: int, budget: int, clock_unit: ClockUnit,
                 schedule: Schedule, expert: str, dataset: str | None = None, episodes_per_round: int = 10,
                 label_budget: int | None = None, steps_per_round: int = 500, beta_schedule: BetaSchedule = "constant",
                 beta: float = 0.0, beta_decay: float = 0.5, beta_rounds: int = 10, batch_size: int = 256,
                 deterministic: bool = True, save_rounds: bool = True, labels_per_round: int | None = None,
                 streams: dict[str, Any] | None = None) -> None:
        """
        Args:
            expert: who labels: an lrl run directory or checkpoint, or ``package.module:function``
                (:mod:`lrl.data.expert`); it must act in ``env:``.
            dataset: initial demonstrations (a Minari dataset id or directory) trained on as round 0; without
                them round 0 is ``episodes_per_round`` episodes of the expert.
            episodes_per_round: episodes collected each round, global across ranks.
            label_budget: the most expert labels (visited states) this run asks for, demonstrations not counted;
                collection stops exactly there. None: no limit.
            steps_per_round: gradient steps on the aggregate between two rounds.
            beta_schedule, beta, beta_decay, beta_rounds: β_i, the probability of executing the expert's action in
                round i (:func:`beta_at`).
            batch_size: samples per gradient step, global across ranks.
            deterministic: the learner acts with its deterministic action; false: it samples.
            save_rounds: save each collected round as a Minari dataset, ``<run_dir>/dagger/``.
            labels_per_round: the most expert labels one round asks for (its last episode is cut there, marked
                truncated); with a small ``label_budget`` this is what leaves labels for the learner's own rounds.
            streams: further named offline streams, ``{name: {path, batch_size}}``.
        """
        super().__init__(env=env, spec=spec, seed=seed, budget=budget, clock_unit=clock_unit, batch_size=batch_size,
                         steps_per_round=steps_per_round, deterministic=deterministic, streams=streams)
        self.expert = load_expert(expert, "data.expert")
        self.expert.check_spec(spec, "data.expert")
        self.dataset, self.episodes_per_round, self.label_budget = dataset, episodes_per_round, label_budget
        self.beta_schedule, self.beta, self.beta_decay, self.beta_rounds = beta_schedule, beta, beta_decay, beta_rounds
        self.save_rounds, self.labels_per_round = save_rounds, labels_per_round
        self.labels = 0  # expert labels asked for so far, global

    # --- declarations ---------------------------------------------------------------------------------------------
    @classmethod
    def probe_spec(cls, env: EnvConfig | None, args: dict[str, Any]) -> Spec:
        """The env's spec; the expert (when it knows its env) and the demonstrations must describe the same
        observations and actions. Checked before anything is written."""
        spec = super().probe_spec(env, args)
        load_expert(args["expert"], "data.expert").check_spec(spec, "data.expert")
        if args.get("dataset") is not None:
            from lrl.data.minari_io import minari_spec

            require_same(minari_spec(args["dataset"], "data.dataset"), spec, f"data.dataset={args['dataset']}",
                         "the demonstrations")
        return spec

    @classmethod
    def check_args(cls, args: dict[str, Any], env: EnvConfig | None, schedule: Schedule, consumes: Consumes,
                   world: int | None, budget: int | None = None) -> None:
        super().check_args(args, env, schedule, consumes, world, budget)
        labels, size = args["label_budget"], args["batch_size"]
        if labels is not None and args["dataset"] is None and labels < size:
            raise RecipeError(f"data.label_budget={labels} is smaller than data.batch_size={size}: the aggregate "
                              "could never fill one batch; raise the budget or lower the batch size")

    # --- the rounds -----------------------------------------------------------------------------------------------
    def initial_data(self) -> dict[str, torch.Tensor] | None:
        if self.dataset is None:
            return None
        from lrl.data.minari_io import read_minari

        flat, _ = read_minari(self.dataset, "data.dataset")
        keys = [*ROLLOUT_KEYS, *(k for part in GOAL_KEYS[1:] for k in (part, f"next/{part}"))]
        data = {k: flat[k] for k in keys if k in flat}
        data["action"] = data["action"].long() if self.spec.action_kind == "discrete" else data["action"].float()
        return data

    def beta_of(self, round_index: int) -> float:
        """β of a collection round: 1 for round 0 (no demonstrations: the expert shows the task), else the
        schedule's."""
        if round_index == 0:
            return 1.0
        return beta_at(round_index, self.beta_schedule, self.beta, self.beta_decay, self.beta_rounds)

    def mixture(self, beta: float) -> StepFn:
        """The step function of a round: the expert labels every state; each episode's own generator decides,
        step by step, whether the expert's action (probability β) or the learner's is executed."""

        def step(obs: Any, generators: list[np.random.Generator]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
            labels = expert_labels(self.expert, obs, self.spec, len(generators))
            use_expert = np.asarray([g.random() < beta for g in generators], bool)
            if use_expert.all():
                actions = labels
            else:
                mine = self.learner_actions(obs).reshape(labels.shape).astype(labels.dtype)
                actions = np.where(use_expert.reshape(-1, *(1,) * (labels.ndim - 1)), labels, mine)
            return actions, {"label": labels, "expert": use_expert}

        return step

    def collect_round(self, round_index: int) -> list[Episode] | None:
        remaining = None if self.label_budget is None else self.label_budget - self.labels
        if remaining is not None and remaining <= 0:
            return None
        caps = [c for c in (remaining, self.labels_per_round) if c is not None]
        return self.collect_episodes(round_index, self.episodes_per_round, self.mixture(self.beta_of(round_index)),
                                     min(caps) if caps else None)

    def to_transitions(self, episodes: list[Episode]) -> dict[str, torch.Tensor]:
        """The visited states with the expert's labels as ``action`` (not the executed mixture's)."""
        return transitions(episodes, action=lambda e: e.records["label"], spec=self.spec)

    def on_round(self, round_index: int, episodes: list[Episode], chunk: dict[str, torch.Tensor]) -> dict[str, float]:
        new = sum(len(e) for e in episodes)
        self.labels += new
        trainer = self.trainer
        if self.save_rounds and episodes and trainer is not None and trainer.is_global_zero:
            self.save_round(Path(trainer.default_root_dir).resolve(), round_index, episodes)  # Minari needs it absolute
        executed = np.concatenate([e.records["expert"] for e in episodes]) if episodes else np.zeros(0)
        return {"round": float(round_index), "beta": self.beta_of(round_index), "labels": float(self.labels),
                "round_labels": float(new), "dataset_size": float(len(self)),
                "expert_executed": float(executed.mean()) if len(executed) else 0.0}

    def save_round(self, store: Path, round_index: int, episodes: list[Episode]) -> Path:
        """Round ``round_index``'s labelled episodes as the Minari dataset ``dagger/round-NNN-v0`` of ``store`` (the run
        directory; actions: the expert's labels; each episode's reset seed in its metadata). A round of that index
        left by an interrupted run past its last checkpoint is replaced: the resumed run collects it again."""
        from lrl.data.minari_io import write_minari

        dataset_id = round_id(round_index)
        stale = store / dataset_id
        if stale.exists():
            log.info("replacing %s, left by the run before it resumed", stale)
            shutil.rmtree(stale)
        data = [{"observations": e.observations, "actions": e.records["label"], "rewards": e.rewards,
                 "terminations": e.terminations, "truncations": e.truncations,
                 "seed": episode_seed(self.seed, round_index, e.index)} for e in episodes]
        beta = self.beta_of(round_index)
        return write_minari(dataset_id, data, spec=self.spec, env_id=self.env_cfg.id,
                            env_kwargs=dict(self.env_cfg.kwargs), max_episode_steps=self.env_cfg.max_episode_steps,
                            store=store, algorithm_name="lrl dagger",
                            description=f"DAgger round {round_index} (beta={beta:g}): states visited by the "
                                        f"beta-mixture, actions labelled by the expert {self.expert.ref}")

    # --- checkpoint state -----------------------------------------------------------------------------------------
    def _rank_state(self) -> dict[str, Any]:
        return {**super()._rank_state(), "labels": self.labels}

    def _load_rank_state(self, state: dict[str, Any]) -> None:
        super()._load_rank_state(state)
        self.labels = state["labels"]


def round_id(round_index: int) -> str:
    """The Minari dataset id of a saved round in the run directory (Minari ids carry a version)."""
    return f"dagger/round-{round_index:03d}-v0"
