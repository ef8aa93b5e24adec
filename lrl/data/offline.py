"""An offline dataset as the run's data source: no environment, the clock counts gradient steps or samples
(docs/contract.md). The file format and the sampling are in :mod:`lrl.data.dataset`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from lrl.contract import Batch, ClockUnit, Consumes, Schedule
from lrl.data.dataset import OfflineStream, load_dataset
from lrl.data.ranked import BatchStream, RankedDataModule
from lrl.errors import RecipeError
from lrl.recipe.schema import EnvConfig
from lrl.spec import Spec, require_same


class OfflineDataModule(RankedDataModule):
    """A dataset file as the run's source: no environment, the clock counts gradient steps or samples.

    Every step is a boundary (the stream's state says exactly what comes next), so checkpoints, metric flushes and
    evaluation (where the recipe has an ``env:`` section) can happen after any step.
    """

    clock_units: ClassVar[tuple[ClockUnit, ...]] = ("steps", "samples")
    needs_env: ClassVar[bool] = False
    provides: ClassVar[tuple[str, ...]] = ()  # whatever the file holds: checked when it is read

    def __init__(self, *, env: EnvConfig | None, spec: Spec, seed: int, budget: int, clock_unit: ClockUnit,
                 schedule: Schedule, path: str, batch_size: int = 256, streams: dict[str, Any] | None = None) -> None:
        """
        Args:
            path: the dataset file (:func:`save_dataset`).
            batch_size: samples per gradient step, global across ranks.
            streams: further named offline streams, ``{name: {path, batch_size}}``.
        """
        super().__init__(seed=seed, budget=budget, clock_unit=clock_unit, streams=streams)
        self.spec = spec
        self.main = OfflineStream(name="main", seed=seed, path=path, batch_size=batch_size)
        self.steps = 0

    @classmethod
    def probe_spec(cls, env: EnvConfig | None, args: dict[str, Any]) -> Spec:
        """The dataset's own spec; with an ``env:`` section (to evaluate in), the env must describe the same
        observations and actions."""
        spec = load_dataset(args["path"])[1]
        if env is not None:
            from lrl.data.env import probe_env_spec

            require_same(spec, probe_env_spec(env), f"data.path={args['path']}")
        return spec

    @classmethod
    def check_args(cls, args: dict[str, Any], env: EnvConfig | None, schedule: Schedule, consumes: Consumes,
                   world: int | None, budget: int | None = None) -> None:
        if world and args["batch_size"] % world:
            raise RecipeError(f"data.batch_size={args['batch_size']} must be divisible by the number of processes "
                              f"({world})")

    def _built(self) -> bool:
        return self.main.data is not None

    def train_dataloader(self) -> BatchStream:
        trainer = self.trainer
        assert trainer is not None
        self.world_size, self.rank = trainer.world_size, trainer.global_rank
        device = trainer.lightning_module.device
        self.main.setup(self.rank, self.world_size, device)
        self._setup_streams(device)
        self._restore_pending()
        return BatchStream(self)

    def teardown(self, stage: str) -> None:
        self.final_clock = self.clock

    @property
    def clock(self) -> int:
        return self.steps * (self.main.batch_size if self.clock_unit == "samples" else 1)

    @property
    def at_boundary(self) -> bool:
        return True

    def next_batch(self) -> Batch:
        first = self.main.at_boundary
        td = self.main.next()
        self.steps += 1
        return Batch(td, self.clock, self._progress_remaining(), self.main.passes, first)

    def _rank_state(self) -> dict[str, Any]:
        return {"main": self.main.state_dict(), "steps": self.steps}

    def _load_rank_state(self, state: dict[str, Any]) -> None:
        self.main.load_state_dict(state["main"])
        self.steps = state["steps"]
