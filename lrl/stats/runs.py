"""Finished runs and their evaluation curves, from run directories, MLflow run ids, parent runs or experiments.

Every run is read back from MLflow: its recipe name and ``env.id`` (the run's logged parameters), its parent
(``mlflow.parentRunId``) and the history of one metric (by default ``eval/return_mean``, logged at the clock of each
evaluation). A run directory names its MLflow run and store in its checkpoint.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lrl.errors import LrlError

SEEDS_KIND = "seeds"  # tag lrl.kind of the parent run ``lrl seeds`` creates
_RUN_ID = re.compile(r"[0-9a-f]{32}")


class StatsInputError(LrlError):
    """Bad input to ``lrl report`` / ``lrl compare``: one line, exit 2."""

    exit_code = 2


@dataclass
class EvalRun:
    run_id: str
    tracking_uri: str
    recipe: str
    env_id: str
    seed: str | None
    parent_id: str | None
    curve: dict[int, float] = field(repr=False)  # evaluation clock -> metric value
    clock_unit: str = "frames"

    @property
    def final_step(self) -> int:
        return max(self.curve)

    @property
    def final(self) -> float:
        return self.curve[self.final_step]


@dataclass
class Group:
    label: str
    runs: list[EvalRun]
    parent_id: str | None = None


class RunSource:
    """Resolves references to finished runs; one MLflow client per tracking URI."""

    def __init__(self, tracking_uri: str | None, metric: str) -> None:
        from lrl.tracking import resolve_tracking_uri

        self.default_uri = resolve_tracking_uri(tracking_uri, None)
        self.metric = metric
        self._clients: dict[str, Any] = {}

    def client(self, uri: str) -> Any:
        if uri not in self._clients:
            from mlflow import MlflowClient

            from lrl.tracking import check_reachable

            check_reachable(uri)
            self._clients[uri] = MlflowClient(tracking_uri=uri)
        return self._clients[uri]

    def resolve(self, ref: str) -> list[EvalRun]:
        """A run directory or checkpoint, an MLflow run id (a parent: its finished children), or an experiment name
        (its finished runs that logged the metric)."""
        path = Path(ref)
        if path.exists():
            return [self._from_dir(path)]
        if _RUN_ID.fullmatch(ref):
            run = self._get_run(self.default_uri, ref)
            if run is not None:
                return self._from_run_id(run)
        exp = self.client(self.default_uri).get_experiment_by_name(ref)
        if exp is not None:
            return self._from_experiment(exp)
        raise StatsInputError(f"'{ref}' is neither a run directory, an MLflow run id nor an experiment in "
                              f"{self.default_uri}; pass a run directory (runs/<name>/...), a run id or an experiment "
                              "name (--tracking-uri for another store)")

    def _get_run(self, uri: str, run_id: str) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return self.client(uri).get_run(run_id)
        except MlflowException:
            return None

    def _from_dir(self, path: Path) -> EvalRun:
        from lrl.evaluate import read_checkpoint, resolve_checkpoint

        try:
            info = read_checkpoint(resolve_checkpoint(path))["lrl"]
        except LrlError as err:
            raise StatsInputError(f"'{path}' is not an lrl run: {err.message}") from None
        run_id, uri = info.get("mlflow_run_id"), info.get("tracking_uri") or self.default_uri
        if not run_id:
            raise StatsInputError(f"run directory '{path}': its checkpoint names no MLflow run")
        run = self._get_run(uri, run_id)
        if run is None:
            raise StatsInputError(f"run directory '{path}': its MLflow run {run_id} is not in {uri}")
        return self._eval_run(run, uri, what=f"run directory '{path}'")

    def _from_run_id(self, run: Any) -> list[EvalRun]:
        client = self.client(self.default_uri)
        children = client.search_runs([run.info.experiment_id],
                                      filter_string=f"tags.`mlflow.parentRunId` = '{run.info.run_id}'")
        if not children:
            return [self._eval_run(run, self.default_uri, what=f"MLflow run {run.info.run_id}")]
        finished = [c for c in children if c.info.status == "FINISHED"]
        if not finished:
            raise StatsInputError(f"parent run {run.info.run_id} has no finished child runs ({len(children)} "
                                  "unfinished)")
        return [self._eval_run(c, self.default_uri, what=f"MLflow run {c.info.run_id}") for c in finished]

    def _from_experiment(self, exp: Any) -> list[EvalRun]:
        client = self.client(self.default_uri)
        runs = client.search_runs([exp.experiment_id], filter_string="attributes.status = 'FINISHED'",
                                  max_results=50_000)
        out = [self._eval_run(r, self.default_uri, what=f"MLflow run {r.info.run_id}") for r in runs
               if r.data.tags.get("lrl.kind") != SEEDS_KIND and self.metric in r.data.metrics]
        if not out:
            raise StatsInputError(f"experiment '{exp.name}' has no finished runs with {self.metric}")
        return out

    def _eval_run(self, run: Any, uri: str, what: str) -> EvalRun:
        params, tags = run.data.params, run.data.tags
        if "env.id" not in params or "name" not in params:
            raise StatsInputError(f"{what} is not an lrl training run (no recipe name / env.id parameters)")
        history = self.client(uri).get_metric_history(run.info.run_id, self.metric)
        if not history:
            raise StatsInputError(f"{what} has no {self.metric} (was evaluation off? eval.every / eval.final)")
        unit = next((k.split(".", 1)[1] for k in params if k.startswith("budget.")), "frames")
        return EvalRun(run.info.run_id, uri, params["name"], params["env.id"], params.get("seed"),
                       tags.get("mlflow.parentRunId"), {int(m.step): float(m.value) for m in history}, unit)

    def parent_name(self, uri: str, parent_id: str) -> str:
        run = self._get_run(uri, parent_id)
        return str(run.info.run_name) if run is not None else parent_id


def collect(source: RunSource, refs: Iterable[str]) -> list[EvalRun]:
    """The runs that ``refs`` name, each once."""
    seen: dict[tuple[str, str], EvalRun] = {}
    for ref in refs:
        for run in source.resolve(ref):
            seen.setdefault((run.tracking_uri, run.run_id), run)
    return list(seen.values())


def one_env(runs: list[EvalRun]) -> str:
    """The one environment of ``runs``; scores of different environments are not comparable."""
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.env_id] = counts.get(run.env_id, 0) + 1
    if len(counts) > 1:
        listed = ", ".join(f"{env}: {n} run{'s' * (n > 1)}" for env, n in counts.items())
        raise StatsInputError(f"runs of different environments ({listed}); report one environment at a time")
    return next(iter(counts))


def group_runs(source: RunSource, runs: list[EvalRun]) -> list[Group]:
    """Runs of one ``lrl seeds`` sweep form a group (labelled by the parent run's name); others group by recipe."""
    groups: dict[str, Group] = {}
    for run in runs:
        if run.parent_id is not None:
            key = f"parent:{run.parent_id}"
            if key not in groups:
                groups[key] = Group(source.parent_name(run.tracking_uri, run.parent_id), [], run.parent_id)
        else:
            key = f"recipe:{run.recipe}"
            groups.setdefault(key, Group(run.recipe, []))
        groups[key].runs.append(run)
    for g in groups.values():  # a fixed order: the bootstrap resamples by position
        g.runs.sort(key=sort_key)
    labels = [g.label for g in groups.values()]
    for g in groups.values():
        if labels.count(g.label) > 1 and g.parent_id is not None:
            g.label = f"{g.label} ({g.parent_id[:8]})"  # two sweeps of one name stay two lines
    return list(groups.values())


def sort_key(run: EvalRun) -> tuple[int, str]:
    return (int(run.seed) if run.seed is not None and run.seed.lstrip("-").isdigit() else 1 << 62, run.run_id)


def need_two(label: str, n: int) -> None:
    if n < 2:
        raise StatsInputError(f"'{label}' has {n} run; a confidence interval needs at least 2 (more seeds: "
                              "lrl seeds RECIPE --seeds 0-9)")
