"""Demonstrations as a data source: any Minari dataset (recorded with ``lrl demos``, or made elsewhere) feeds an
imitation learner with shuffled minibatches for a budget of gradient steps or samples; no environment is needed.

The Minari I/O API (:func:`read_minari`, :func:`minari_spec`, :func:`write_minari`) is importable from here; it lives
in :mod:`lrl.data.minari_io` so that ``data.streams`` of every source can read Minari datasets too.

The source is the offline one (:class:`lrl.data.offline.OfflineDataModule`: its clock, boundaries and checkpoint
state) with a Minari dataset where that has a dataset file; the sampling is :class:`lrl.data.dataset.OfflineStream`'s.
``max_samples`` keeps only the first N transitions in episode order: the number of expert labels, the knob of a
behaviour-cloning-vs-DAgger comparison (Ross et al. 2011).
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

from lrl.contract import ROLLOUT_KEYS, ClockUnit, Consumes, Schedule
from lrl.data.dataset import OfflineStream
from lrl.data.minari_io import minari_info, minari_spec, read_minari, read_minari_first, write_minari
from lrl.data.offline import OfflineDataModule
from lrl.data.ranked import RankedDataModule
from lrl.errors import RecipeError
from lrl.recipe.schema import EnvConfig
from lrl.spec import Spec, require_same

__all__ = ["DemosDataModule", "minari_spec", "read_minari", "write_minari"]


class DemosDataModule(OfflineDataModule):
    """A Minari dataset as the run's source: no environment, the clock counts gradient steps or samples.

    Every step is a boundary (the stream's state says exactly what comes next), so checkpoints, metric flushes and
    evaluation (where the recipe has an ``env:`` section) can happen after any step, and a resumed run draws exactly
    the minibatches the uninterrupted one would have.
    """

    clock_units: ClassVar[tuple[ClockUnit, ...]] = ("steps", "samples")
    needs_env: ClassVar[bool] = False
    provides: ClassVar[tuple[str, ...]] = (*ROLLOUT_KEYS, "episode", "step")

    def __init__(self, *, env: EnvConfig | None, spec: Spec, seed: int, budget: int, clock_unit: ClockUnit,
                 schedule: Schedule, dataset: str, batch_size: int = 256, max_samples: int | None = None,
                 streams: dict[str, Any] | None = None) -> None:
        """
        Args:
            dataset: a Minari dataset id in the local store (``$MINARI_DATASETS_PATH``, by default
                ``~/.minari/datasets``) or the path of a dataset directory.
            batch_size: samples per gradient step, global across ranks.
            max_samples: use only the first N transitions, in episode order (None: all).
            streams: further named offline streams, ``{name: {path | dataset, batch_size}}``.
        """
        # the offline source's constructor wants a dataset file; everything after it is the same
        RankedDataModule.__init__(self, seed=seed, budget=budget, clock_unit=clock_unit, streams=streams)
        self.spec = spec
        self.main = OfflineStream(name="main", seed=seed, batch_size=batch_size,
                                  loader=functools.partial(read_minari_first, dataset, "data.dataset", max_samples))
        self.steps = 0

    @classmethod
    def probe_spec(cls, env: EnvConfig | None, args: dict[str, Any]) -> Spec:
        """The dataset's spec, from its metadata; with an ``env:`` section (to evaluate in), the env must describe the
        same observations and actions."""
        ref = args["dataset"]
        info = minari_info(ref, "data.dataset")
        size = info.total_steps if args.get("max_samples") is None else min(info.total_steps, args["max_samples"])
        if args.get("batch_size", 256) > size:
            raise RecipeError(f"data.batch_size={args.get('batch_size', 256)}: more than the {size} transitions of "
                              f"data.dataset={ref}" + (" (data.max_samples)" if args.get("max_samples") else ""))
        if env is not None:
            from lrl.data.env import probe_env_spec

            require_same(info.spec, probe_env_spec(env), f"data.dataset={ref}")
        return info.spec

    @classmethod
    def check_args(cls, args: dict[str, Any], env: EnvConfig | None, schedule: Schedule, consumes: Consumes,
                   world: int | None, budget: int | None = None) -> None:
        """An ``env:`` section is only for evaluation: when its env is not installed, say that the dataset alone
        trains (before the generic "unknown environment" line, which would not)."""
        super().check_args(args, env, schedule, consumes, world, budget)
        if env is not None and ":" not in env.id:
            import gymnasium

            if env.id not in gymnasium.registry:
                raise RecipeError(f"env.id={env.id}: not installed here; data.name=demos needs an env only to evaluate "
                                  f"in: remove the env: section to train on data.dataset={args['dataset']} alone, or "
                                  f"install the package that registers {env.id}")
