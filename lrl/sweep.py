"""Hyperparameter sweeps on Optuna (``lrl sweep``; docs/sweeps.md).

A search space (YAML: dotted recipe key -> distribution) is checked against the recipe before anything is written.
Each trial is an ordinary ``lrl train`` run of the recipe with the sampled values, in ``sweeps/<study>/trial-<n>``,
nested in MLflow under one parent run of the sweep; its value is the final ``eval/return_mean`` (maximised). Every
evaluation is reported to the trial and the pruner may stop it there (:class:`~lrl.callbacks.pruning.TrialPruning`).

The study lives in an Optuna storage: by default a journal file in the sweep directory (Optuna's storage for
several processes on one machine); an RDB URL (``--storage``) for several machines. ``--trials N`` is the size of
the whole study: every process started with the same command works on the same study until N trials have finished
(complete or pruned) or are running, so a second shell joins and a rerun after an interruption adds only the
missing ones.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lrl.errors import LrlError, RecipeError
from lrl.recipe import Recipe, dump, validate
from lrl.recipe.load import SPACES, apply_overrides, find_recipe, read_yaml, recipes_dir, set_key, world_size
from lrl.runs import pid_alive
from lrl.tracking.mlflow import create_parent_run, end_run

log = logging.getLogger("lrl")

PRUNERS = ("median", "halving", "none")
TYPES = {"log_uniform": {"low", "high"}, "uniform": {"low", "high"}, "int": {"low", "high", "step", "log"},
         "categorical": {"choices"}}
MAX_FAILURES_IN_A_ROW = 3  # crashed trials (a value the recipe refuses, a diverging run) before a worker stops
PARENT_ATTR = "lrl.mlflow_parent_run_id"
SETUP_ATTR = "lrl.sweep"


# --- the search space ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    key: str  # dotted recipe key, as in overrides
    type: str
    low: float | int | None = None
    high: float | int | None = None
    step: int = 1
    log: bool = False
    choices: tuple[Any, ...] = ()

    def probes(self) -> list[Any]:
        """The values checked against the recipe before the sweep starts: both ends, or every choice."""
        return list(self.choices) if self.type == "categorical" else [self.low, self.high]

    def suggest(self, trial: Any) -> Any:
        if self.type == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.type == "int":
            return trial.suggest_int(self.key, int(self.low or 0), int(self.high or 0), step=self.step, log=self.log)
        return trial.suggest_float(self.key, float(self.low or 0), float(self.high or 0),
                                   log=self.type == "log_uniform")


def _number(value: Any, integer: bool) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if integer else isinstance(value, int | float) and math.isfinite(value)


def parse_space(raw: Any, source: str) -> list[Param]:
    """A space mapping -> parameters, or one :class:`RecipeError` naming the key and what is wrong with it."""
    if not isinstance(raw, dict) or not raw:
        raise RecipeError(f"search space {source}: expected a mapping of recipe keys (algo.lr: {{type: log_uniform, "
                          "low: 1.0e-4, high: 1.0e-2}, ...)")
    params = []
    for key, spec in raw.items():
        where = f"search space {source}: {key}"
        if not isinstance(key, str) or not key or any(not part for part in key.split(".")):
            raise RecipeError(f"search space {source}: '{key}' is not a recipe key like algo.lr")
        if not isinstance(spec, dict) or "type" not in spec:
            raise RecipeError(f"{where}: expected {{type: ..., ...}} with type one of {', '.join(TYPES)}")
        kind = spec["type"]
        if kind not in TYPES:
            raise RecipeError(f"{where}: unknown type '{kind}'; use one of {', '.join(TYPES)}")
        extra = set(spec) - TYPES[kind] - {"type"}
        missing = {"low", "high", "choices"} & TYPES[kind] - set(spec)
        if extra or missing:
            what = f"unknown field {sorted(extra)[0]}" if extra else f"missing field {sorted(missing)[0]}"
            raise RecipeError(f"{where}: {what} (a {kind} takes {', '.join(sorted(TYPES[kind]))})")
        if kind == "categorical":
            choices = spec["choices"]
            if not isinstance(choices, list) or not choices:
                raise RecipeError(f"{where}: choices must be a non-empty list")
            if any(c is not None and not isinstance(c, str | bool | int | float) for c in choices):
                raise RecipeError(f"{where}: choices must be numbers, strings, booleans or null (Optuna's categorical "
                                  "values); sweep a list-valued key through one key per choice instead")
            params.append(Param(key, kind, choices=tuple(choices)))
            continue
        integer = kind == "int"
        low, high, step, log_ = spec["low"], spec["high"], spec.get("step", 1), spec.get("log", False)
        if not _number(low, integer) or not _number(high, integer):
            raise RecipeError(f"{where}: low and high must be {'integers' if integer else 'finite numbers'}")
        if low >= high:
            raise RecipeError(f"{where}: low ({low}) must be below high ({high})")
        if (kind == "log_uniform" or log_) and low <= 0:
            raise RecipeError(f"{where}: a log scale needs low > 0 (got {low})")
        if not _number(step, True) or step < 1 or not isinstance(log_, bool):
            raise RecipeError(f"{where}: step must be an integer >= 1 and log true or false")
        if log_ and step != 1:
            raise RecipeError(f"{where}: step and log cannot be combined (Optuna's log-scaled integers have step 1)")
        params.append(Param(key, kind, low, high, step, log_))
    return params


def find_space(ref: str | None, recipe: Recipe, recipe_ref: str) -> Path:
    """``--space``: a YAML path or a shipped space name; default: the shipped space named like the recipe."""
    root = recipes_dir() / SPACES
    shipped = sorted(p.stem for p in root.glob("*.yaml"))
    if ref is None:
        for name in (recipe.name, recipe_ref.replace("/", "-")):
            if (root / f"{name}.yaml").is_file():
                return root / f"{name}.yaml"
        raise RecipeError(f"no shipped search space for recipe {recipe_ref} (shipped: {', '.join(shipped)}); pass "
                          "--space FILE")
    path = Path(ref)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise RecipeError(f"search space file '{ref}' not found")
        return path
    if (root / f"{ref}.yaml").is_file():
        return root / f"{ref}.yaml"
    raise RecipeError(f"unknown search space '{ref}'; shipped: {', '.join(shipped)}, or pass a YAML file")


def with_params(data: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The raw recipe with dotted keys set to values (as overrides would, without a round trip through text)."""
    data = copy.deepcopy(data)
    for key, value in params.items():
        set_key(data, key.split("."), value, key)
    return data


def check_space(base: dict[str, Any], params: list[Param], source: str, recipe_ref: str) -> None:
    """Every end of every range (every choice) through lrl's own recipe validation: an unknown key or a value the
    recipe refuses fails here, in one line, before anything runs."""
    for p in params:
        for value in p.probes():
            try:
                validate(with_params(base, {p.key: value}), source=f"recipe {recipe_ref} with {p.key}={value}")
            except RecipeError as err:
                raise RecipeError(f"search space {source}: {err.message}") from None


# --- the sweep's set-up, shared by every worker ---------------------------------------------------------------------
@dataclass
class Sweep:
    recipe_ref: str
    overrides: list[str]
    space_path: str
    study: str
    storage: str  # an RDB URL, or the path of an Optuna journal file
    trials: int
    seed: int
    pruner: str = "median"
    startup_trials: int = 5
    tracking_uri: str = ""
    sweep_dir: str = ""
    out: str = ""
    parent_run_id: str = ""
    base: dict[str, Any] = field(default_factory=dict)  # the raw recipe with the overrides applied

    def params(self) -> list[Param]:
        return parse_space(yaml.safe_load(Path(self.space_path).read_text()), self.space_path)


def prepare(recipe_ref: str, overrides: list[str], trials: int, space: str | None = None, study: str | None = None,
            storage: str | None = None, out: str | None = None, pruner: str = "median", startup_trials: int = 5,
            seed: int | None = None, experiment: str | None = None, tracking_uri: str | None = None) -> Sweep:
    """Check everything (recipe, space, storage, tracking), then create or join the study and the parent MLflow
    run. Bad input raises before anything is written."""
    from lrl.tracking import check_reachable, resolve_tracking_uri

    if pruner not in PRUNERS:
        raise RecipeError(f"--pruner {pruner}: use one of {', '.join(PRUNERS)}")
    overrides = [*overrides, *([f"tracking.experiment={experiment}"] if experiment else [])]
    base = apply_overrides(read_yaml(find_recipe(recipe_ref)), overrides)
    recipe = validate(base, source=f"recipe {recipe_ref}")
    if recipe.env is None or not (recipe.eval.final or recipe.eval.every):
        raise RecipeError(f"recipe {recipe_ref}: a sweep maximises eval/return_mean; it needs an env: section and "
                          "eval.final=true or eval.every > 0")
    if world_size(recipe.trainer) != 1:
        raise RecipeError(f"recipe {recipe_ref}: a sweep runs each trial in one process; set trainer.devices=1")
    space_path = find_space(space, recipe, recipe_ref)
    try:
        raw_space = yaml.safe_load(space_path.read_text())
    except yaml.YAMLError as err:
        raise RecipeError(f"search space {space_path}: not valid YAML ({str(err).splitlines()[0]})") from None
    params = parse_space(raw_space, str(space_path))
    check_space(base, params, str(space_path), recipe_ref)
    name = study or recipe.name
    if not name or "/" in name or name in (".", ".."):
        raise RecipeError(f"--study {name!r}: must be a file name (it names sweeps/<study>/)")
    uri = resolve_tracking_uri(tracking_uri, recipe.tracking.tracking_uri)
    check_reachable(uri)
    sweep_dir = Path("sweeps") / name
    cfg = Sweep(recipe_ref, overrides, str(space_path.resolve()), name, storage or str(sweep_dir / "journal.log"),
                trials, recipe.seed if seed is None else seed, pruner, startup_trials, uri, str(sweep_dir),
                out or str(Path("sweeps") / f"{name}-best.yaml"), base=base)
    setup = {"recipe": recipe.to_dict(), "space": raw_space}
    if "://" not in cfg.storage:
        Path(cfg.storage).parent.mkdir(parents=True, exist_ok=True)
    opt_study = open_study(cfg)
    known = opt_study.user_attrs.get(SETUP_ATTR)
    if known is None:
        opt_study.set_user_attr(SETUP_ATTR, json.loads(json.dumps(setup)))
    elif known != json.loads(json.dumps(setup)):
        raise LrlError(f"study '{name}' in {cfg.storage} was started with another recipe, overrides or search space; "
                       "pass --study NAME for a new study")
    sweep_dir.mkdir(parents=True, exist_ok=True)
    cfg.parent_run_id = _parent_run(opt_study, cfg, recipe, raw_space)
    return cfg


def _storage(spec: str) -> Any:
    import optuna

    try:
        if "://" in spec:  # several machines: a database every worker reaches; heartbeats fail crashed trials
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(spec, heartbeat_interval=60, grace_period=180)
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(spec))  # one machine: a journal file with a lock
    except Exception as err:  # a bad URL, a missing driver, an unwritable path: one line
        reason = " ".join(str(err).split())
        raise LrlError(f"cannot open Optuna storage {spec}: {type(err).__name__}: {reason}") from None


def open_study(cfg: Sweep) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # lrl logs each trial in its own words
    pruner: optuna.pruners.BasePruner = optuna.pruners.NopPruner()
    if cfg.pruner == "median":
        pruner = optuna.pruners.MedianPruner(n_startup_trials=cfg.startup_trials, n_warmup_steps=0)
    elif cfg.pruner == "halving":
        pruner = optuna.pruners.SuccessiveHalvingPruner()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant_liar is "experimental"
        sampler = optuna.samplers.TPESampler(seed=cfg.seed, constant_liar=True)
    storage = _storage(cfg.storage)
    if cfg.study not in {s.study_name for s in storage.get_all_studies()} and any(Path(cfg.sweep_dir).glob("trial-*")):
        raise LrlError(f"{cfg.sweep_dir} holds the trials of a study that {cfg.storage} does not know; pass "
                       "--study NAME for a new sweep, or the --storage it ran with")
    study = optuna.create_study(study_name=cfg.study, storage=storage, sampler=sampler, pruner=pruner,
                                direction="maximize", load_if_exists=True)
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise LrlError(f"study '{cfg.study}' in {cfg.storage} minimises; an lrl sweep maximises eval/return_mean")
    return study


def _parent_run(study: Any, cfg: Sweep, recipe: Recipe, raw_space: Any) -> str:
    """The sweep's MLflow run (one per study, found through the study), set RUNNING while trials run."""
    from mlflow import MlflowClient

    client = MlflowClient(cfg.tracking_uri)
    run_id = study.user_attrs.get(PARENT_ATTR)
    if run_id:
        try:
            client.update_run(run_id, status="RUNNING")
            return str(run_id)
        except Exception:  # another tracking store than the study's first shell: a parent run there
            pass
    run_id = create_parent_run(cfg.tracking_uri, recipe.tracking.experiment, f"sweep-{cfg.study}",
                               {"lrl.sweep.study": cfg.study, "lrl.sweep.storage": cfg.storage,
                                "lrl.sweep.recipe": cfg.recipe_ref, "lrl.sweep.pruner": cfg.pruner})
    study.set_user_attr(PARENT_ATTR, run_id)
    try:
        client.log_text(run_id, yaml.safe_dump(raw_space, sort_keys=False), "search_space.yaml")
    except Exception as err:  # artifacts are a convenience; the sweep goes on
        log.warning("MLflow: could not store the search space with the sweep run (%s)", err)
    return run_id


# --- a worker: trials until the study has enough ----------------------------------------------------------------------
def _fail_stale(study: Any, storage: Any) -> None:
    """Trials left RUNNING by a worker that died without telling (killed hard): on this machine, their process is
    gone; an RDB storage also knows them by their missing heartbeat."""
    import optuna
    from optuna.trial import TrialState

    if isinstance(storage, optuna.storages.RDBStorage):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optuna.storages.fail_stale_trials(study)
    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = str(t.user_attrs.get("lrl.worker", ""))
        whost, _, pid = worker.rpartition(":")
        if whost == host and pid.isdigit() and not pid_alive(int(pid)):
            try:
                study.tell(t.number, state=TrialState.FAIL)
                log.warning("trial %d: its worker (process %s) is gone; marked failed", t.number, pid)
            except (ValueError, RuntimeError):  # another worker got there first
                pass


def counted(study: Any) -> int:
    """Trials towards --trials: finished (complete or pruned) and running ones."""
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)))


def _mark(cfg: Sweep, run_id: str | None, state: str) -> None:
    if not run_id:
        return
    try:
        from mlflow import MlflowClient

        client = MlflowClient(cfg.tracking_uri)
        client.set_tag(run_id, "lrl.sweep.state", state)
        if state == "PRUNED":
            client.set_terminated(run_id, "KILLED")
    except Exception as err:
        log.warning("MLflow: could not mark run %s as %s (%s)", run_id, state, err)


def _params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def _objective(cfg: Sweep, params: list[Param], failures: list[str]) -> Any:
    import optuna

    from lrl.callbacks.pruning import TrialPruning
    from lrl.launch import RunResult, train

    def objective(trial: optuna.Trial) -> float:
        # a sampler seeded by the trial's number: one worker repeats the same sweep; workers side by side differ
        trial.study.sampler = optuna.samplers.TPESampler(seed=cfg.seed + trial.number, constant_liar=True)
        trial.set_user_attr("lrl.worker", f"{socket.gethostname()}:{os.getpid()}")
        values = {p.key: p.suggest(trial) for p in params}
        run_dir = Path(cfg.sweep_dir) / f"trial-{trial.number}"
        trial.set_user_attr("lrl.run_dir", str(run_dir))
        pruning = TrialPruning(trial, 0)
        try:
            recipe = validate(with_params(cfg.base, {**values, "tracking.run_name": f"trial-{trial.number}"}),
                              source=f"trial {trial.number}")
            pruning.budget = recipe.budget.amount
            tags = {"mlflow.parentRunId": cfg.parent_run_id, "lrl.sweep.study": cfg.study,
                    "lrl.sweep.trial": str(trial.number)}
            log.info("trial %d: %s", trial.number, _params_text(values))
            result = train(recipe, run_dir=run_dir, tracking_uri=cfg.tracking_uri, callbacks=[pruning], tags=tags)
        except Exception as err:  # the sweep goes on: a value the recipe refuses, a run that diverged
            if os.environ.get("LRL_DEBUG"):
                raise
            message = err.message if isinstance(err, LrlError) else f"{type(err).__name__}: {err}"
            failures.append(" ".join(message.split()))
            log.warning("trial %d failed: %s", trial.number, failures[-1])
            return math.nan  # Optuna records the trial as FAIL
        assert isinstance(result, RunResult)
        trial.set_user_attr("lrl.mlflow_run_id", result.mlflow_run_id or "")
        if result.interrupted or (pruning.pruned_at is None and result.clock < recipe.budget.amount):
            raise KeyboardInterrupt  # stopped by a signal: neither complete nor pruned
        failures.clear()
        if pruning.pruned_at is not None:
            _mark(cfg, result.mlflow_run_id, "PRUNED")
            log.info("trial %d pruned at %s %s", trial.number, f"{pruning.pruned_at:,}", result.clock_unit)
            raise optuna.TrialPruned()
        if result.eval is None:
            raise LrlError(f"trial {trial.number}: the run ended without an evaluation")
        _mark(cfg, result.mlflow_run_id, "COMPLETE")
        value = float(result.eval["return_mean"])
        log.info("trial %d: eval return %.2f at %s %s", trial.number, value, f"{result.clock:,}", result.clock_unit)
        return value

    return objective


class Interrupted(LrlError):
    """Ctrl-C or SIGTERM: the running trial failed, the finished ones are kept."""

    def __init__(self) -> None:
        super().__init__("sweep interrupted; the running trial is marked failed, finished ones are kept. Run the same "
                         "command again to go on")


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM between trials stops the worker as Ctrl-C does (a run's own handler wins)


def work(cfg: Sweep) -> None:
    """Run trials of the study until it has ``cfg.trials`` finished or running ones."""
    os.environ.setdefault("LRL_NUM_THREADS", "1")  # workers side by side: one torch thread each
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        params = cfg.params()
        study = open_study(cfg)
        storage = study._storage
        failures: list[str] = []
        objective = _objective(cfg, params, failures)
        while True:
            _fail_stale(study, storage)
            if counted(study) >= cfg.trials:
                return
            study.optimize(objective, n_trials=1, gc_after_trial=False)
            if len(failures) >= MAX_FAILURES_IN_A_ROW:
                raise LrlError(f"{len(failures)} trials in a row failed (last: {failures[-1]}); fix the recipe or "
                               "the search space")
    except KeyboardInterrupt:
        raise Interrupted() from None
    finally:
        signal.signal(signal.SIGTERM, previous)


# --- the launcher: workers, then the best recipe ----------------------------------------------------------------------
def run_workers(cfg: Sweep, jobs: int) -> int:
    """``jobs`` workers on the study: this process and ``jobs - 1`` worker processes. The exit code of the first
    worker process that failed, or 0 (this process's own failure raises)."""
    os.environ.setdefault("LRL_NUM_THREADS", "1")  # workers side by side: one torch thread each, here and there
    # their own session: a terminal's Ctrl-C reaches this process, which stops them with SIGTERM (a graceful stop of
    # the running trial, or of the worker between trials), so none is caught half-started
    procs = [subprocess.Popen([sys.executable, "-m", "lrl.sweep", json.dumps(asdict(cfg))], env=dict(os.environ),
                              start_new_session=True) for _ in range(jobs - 1)]
    stopped = False

    def stop() -> None:  # a graceful stop (SIGTERM: a second SIGINT would abort a run without its checkpoint)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    try:
        work(cfg)
    except BaseException:  # interrupted, or trials keep failing: the worker processes stop their trials too
        stop()
        raise
    finally:
        codes = []
        for p in procs:
            while True:
                try:
                    codes.append(p.wait())
                    break
                except KeyboardInterrupt:  # Ctrl-C while this process waits for the others
                    stopped = True
                    stop()
    if stopped:
        raise Interrupted()
    return next((c if c > 0 else 1 for c in codes if c != 0), 0)  # killed by a signal (< 0): 1


def run(cfg: Sweep, jobs: int) -> tuple[int, Summary]:
    """The workers, then :func:`finish`; the sweep's MLflow run is marked KILLED when they stop early."""
    try:
        code = run_workers(cfg, jobs)
    except BaseException:
        end_run(cfg.tracking_uri, cfg.parent_run_id, "KILLED")
        raise
    summary = finish(cfg)
    if code and summary.out is None:
        end_run(cfg.tracking_uri, cfg.parent_run_id, "KILLED")
    return code, summary


@dataclass
class Summary:
    study: str
    trials: int
    complete: int
    pruned: int
    failed: int
    running: int
    best_number: int | None = None
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    out: str | None = None

    def line(self, wanted: int) -> str:
        text = (f"study {self.study}: {self.complete} complete, {self.pruned} pruned, {self.failed} failed"
                + (f", {self.running} running elsewhere" if self.running else ""))
        if self.best_number is None:
            return text + "; no complete trial yet"
        text += (f"; best trial {self.best_number}: eval return {self.best_value:.2f} with "
                 f"{_params_text(self.best_params)}")
        if self.out:
            return text + f"; best recipe {self.out} (lrl train {self.out})"
        return text + f"; {self.complete + self.pruned} of {wanted} trials finished, the best recipe comes when all are"


def finish(cfg: Sweep) -> Summary:
    """The study's state; once it has its trials, the best recipe written to ``cfg.out`` and logged to the parent
    run."""
    from optuna.trial import TrialState

    study = open_study(cfg)
    states = [t.state for t in study.get_trials(deepcopy=False)]
    summary = Summary(cfg.study, len(states), states.count(TrialState.COMPLETE), states.count(TrialState.PRUNED),
                      states.count(TrialState.FAIL), states.count(TrialState.RUNNING))
    if not summary.complete:
        return summary
    best = study.best_trial
    summary.best_number, summary.best_value, summary.best_params = best.number, best.value, dict(best.params)
    if summary.complete + summary.pruned < cfg.trials:
        return summary
    recipe = validate(with_params(cfg.base, best.params), source=f"best trial {best.number}")
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# The best of {summary.complete + summary.pruned} trials of sweep '{cfg.study}' (trial {best.number}, "
              f"eval/return_mean {best.value:.2f}): {cfg.recipe_ref} with {_params_text(best.params)}.\n"
              f"# Run: lrl train {out}\n")
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(header + dump(recipe))
    os.replace(tmp, out)
    summary.out = str(out)
    _log_best(cfg, summary, out)
    end_run(cfg.tracking_uri, cfg.parent_run_id, "FINISHED")
    return summary


def _log_best(cfg: Sweep, summary: Summary, out: Path) -> None:
    try:
        from mlflow import MlflowClient

        client = MlflowClient(cfg.tracking_uri)
        run_id = cfg.parent_run_id
        finished = summary.complete + summary.pruned
        client.log_metric(run_id, "best_value", float(summary.best_value or 0.0), step=finished)
        client.set_tag(run_id, "best_trial", str(summary.best_number))
        for key, value in summary.best_params.items():
            client.set_tag(run_id, f"best.{key}", str(value))  # tags: a larger --trials later may change the best
        with tempfile.TemporaryDirectory() as tmp:
            copy_ = Path(tmp) / "best_recipe.yaml"
            copy_.write_text(out.read_text())
            client.log_artifact(run_id, str(copy_))
    except Exception as err:
        log.warning("MLflow: could not log the best trial to the sweep run %s (%s)", cfg.parent_run_id, err)


def _worker_main(argv: list[str]) -> int:
    from lrl.launch import setup_logging

    setup_logging()
    try:
        work(Sweep(**json.loads(argv[0])))
    except Interrupted:
        return 130  # stopped by the launching process, which says so
    except LrlError as err:
        print(f"error: {' '.join(err.message.split())}", file=sys.stderr)
        return err.exit_code
    return 0


if __name__ == "__main__":  # a worker process of `lrl sweep --jobs J`
    sys.exit(_worker_main(sys.argv[1:]))
