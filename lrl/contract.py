"""The module ↔ data contract (docs/contract.md): what a module may ask of its data source, what a data source may
ask of its module, what an algorithm declares it consumes, and the record that crosses between them.

Modules and callbacks talk to the data only through :class:`DataSource` (reached with :func:`data_source`);
data sources talk to the module only through :class:`Learner` (reached with :func:`learner`). Nothing else reaches
across by attribute.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast, runtime_checkable

if TYPE_CHECKING:
    import lightning as L
    import torch
    from tensordict import TensorDict
    from torch import nn

    from lrl.spec import Spec

# The acting policy handed from the module to the source: observations (+ the collector's generator) ->
# {"action": ..., and whatever the update needs, e.g. "sample_log_prob"}.
CollectionPolicy = Callable[["torch.Tensor", "torch.Generator"], dict[str, "torch.Tensor"]]

ClockUnit = Literal["frames", "steps", "samples", "tokens", "prompts"]
CLOCK_UNITS: tuple[ClockUnit, ...] = ("frames", "steps", "samples", "tokens", "prompts")
CLOCK_DOC: dict[str, str] = {
    "frames": "environment frames, global across ranks",
    "steps": "gradient (optimiser) steps",
    "samples": "dataset samples consumed, global across ranks",
    "tokens": "generated tokens, global across ranks",
    "prompts": "prompts completed, global across ranks",
}


ROLLOUT_KEYS: tuple[str, ...] = ("observation", "action", "next/observation", "next/reward", "next/terminated",
                                 "next/truncated", "next/done")  # what an environment source provides


@dataclass
class Batch:
    """One update's data plus the clock: what the module needs for schedules and logging."""

    td: TensorDict  # the main stream's minibatch
    clock: int  # the recipe's clock (budget unit) after producing this batch, global across ranks
    progress_remaining: float  # 1 at the start of the budget, 0 at its end
    rollout: int  # index of the rollout / collection step / dataset epoch the main minibatch comes from
    first: bool  # first minibatch of its rollout
    episodes: list[tuple[float, int]] = field(default_factory=list)  # (return, length) finished since the last one
    streams: dict[str, TensorDict] = field(default_factory=dict)  # the other named streams' minibatches
    stream_first: dict[str, bool] = field(default_factory=dict)  # per stream: this minibatch begins a new pass


@dataclass(frozen=True)
class Schedule:
    """How an algorithm consumes one rollout: ``epochs`` passes of minibatches of ``minibatch_size`` samples
    (global across ranks); ``minibatch_size=None`` is the whole rollout per step."""

    epochs: int = 1
    minibatch_size: int | None = None


@dataclass(frozen=True)
class Consumes:
    """What an algorithm learns from, declared on its class and checked by ``lrl validate`` before anything is built.

    sources: the data modules (registry names) it can learn from; the first is the default.
    keys: what it reads from every batch of the main stream (``next/reward`` for nested keys).
    observations, actions: the spec kinds its networks accept.
    whole_episodes: every rollout holds complete episodes only (``data.complete_episodes=true``).
    whole_rollout: each optimiser step sees the whole rollout (no minibatches).
    single_pass: one pass over each rollout (``epochs == 1``).
    streams: further named streams it reads in every update (``data.streams.<name>``).
    """

    sources: tuple[str, ...]
    keys: tuple[str, ...] = ("observation", "action")
    observations: tuple[str, ...] = ("box",)
    actions: tuple[str, ...] = ("discrete", "continuous")
    whole_episodes: bool = False
    whole_rollout: bool = False
    single_pass: bool = False
    streams: tuple[str, ...] = ()


@runtime_checkable
class DataSource(Protocol):
    """What a module or a callback may ask of the run's data source (a ``LightningDataModule``)."""

    clock_unit: ClockUnit

    @property
    def clock(self) -> int:
        """Progress in ``clock_unit``, global across ranks."""

    @property
    def at_boundary(self) -> bool:
        """True when every batch of the current rollout / collection step has been handed out: checkpoints,
        evaluation and metric flushes happen only here, where the source's state says exactly what comes next."""

    def end_rollout(self) -> None:
        """Drop the rest of the current rollout's batches (e.g. PPO's KL early stop)."""

    def acting_generator(self) -> torch.Generator | None:
        """The generator the collection policy draws from (None without a collector)."""

    def recent_episodes(self) -> list[tuple[float, int]]:
        """The last finished training episodes (return, length), oldest first; empty without an environment."""

    def observation_stats(self) -> dict[str, Any] | None:
        """Observation normalisation statistics (``mean``, ``var``) the policy sees, or None."""

    def write_sidecar(self, dirpath: Path) -> Path | None:
        """Write what does not fit in a checkpoint (replay buffers) next to it; None when there is nothing."""


@runtime_checkable
class Learner(Protocol):
    """What a data source may ask of the module it feeds."""

    spec: Spec

    def collection_policy(self) -> nn.Module:
        """A plain module ``(obs, generator) -> {"action": ..., ...}`` that explores; built after device set-up."""

    def process_rollout(self, td: TensorDict) -> TensorDict:
        """Annotate a fresh rollout without gradients (values, advantages, ...)."""

    def set_clock(self, clock: int) -> None:
        """The source's clock before it collects: exploration schedules act on it."""

    def relabel_rollout(self, td: TensorDict) -> TensorDict:
        """A fresh rollout before ``process_rollout`` (or before a replay buffer stores it): with ``rlhf:``, its
        ``next/reward`` becomes the learned reward (docs/rlhf.md); unchanged otherwise."""

    def relabel_batch(self, td: TensorDict) -> TensorDict:
        """A replay minibatch: with ``rlhf:``, ``next/reward`` becomes the current learned reward."""

    @property
    def discount(self) -> float | None:
        """γ, for return-based reward scaling; None when the module has none."""


_CONFORMING: set[tuple[type, type]] = set()  # (class, protocol) pairs already checked: isinstance on a runtime
# protocol inspects every member (~12 µs), and data_source() runs several times per training step


def _conforming(obj: Any, protocol: type, what: str) -> Any:
    """``obj`` when it implements ``protocol``; else one clear error naming the trainer attribute ``what``."""
    key = (type(obj), protocol)
    if key not in _CONFORMING:
        if not isinstance(obj, protocol):
            raise RuntimeError(f"lrl: the trainer's {what} ({type(obj).__name__}) does not implement "
                               f"lrl.contract.{protocol.__name__}")
        _CONFORMING.add(key)
    return obj


def data_source(trainer: L.Trainer | None) -> DataSource:
    """The trainer's data source, typed; a clear error when a module or callback runs without one."""
    return cast(DataSource, _conforming(getattr(trainer, "datamodule", None), DataSource, "datamodule"))


def learner(trainer: L.Trainer | None) -> Learner:
    """The module the trainer fits, typed (what a data source may ask of it)."""
    return cast(Learner, _conforming(getattr(trainer, "lightning_module", None), Learner, "module"))


def schedule_of(algo_args: Mapping[str, Any], consumes: Consumes) -> Schedule:
    """The update schedule an algorithm's resolved arguments define: ``epochs`` × ``minibatch_size`` where the
    algorithm has them (PPO, SARSA, REINFORCE), one whole-rollout step where it declares ``whole_rollout`` and
    ``single_pass`` (A2C, TRPO, NPG)."""
    epochs = 1 if consumes.single_pass else int(algo_args.get("epochs", 1))
    minibatch = None if consumes.whole_rollout else algo_args.get("minibatch_size")
    return Schedule(epochs, None if minibatch is None else int(minibatch))
