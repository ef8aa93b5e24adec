"""The ``lrl`` command line (Typer). Thin: parse, call :mod:`lrl.launch`, turn errors into one line."""

from __future__ import annotations

import functools
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from lrl.errors import LrlError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Deep RL on PyTorch Lightning + TorchRL. Recipes in, MLflow runs out.")
F = TypeVar("F", bound=Callable[..., Any])

Overrides = Annotated[list[str] | None, typer.Argument(help="KEY=VALUE overrides, e.g. algo.lr=3e-4 seed=1")]


def _one_line(message: str) -> str:
    """Messages quote what the user wrote (keys, values, paths): escape what would break the one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)


def _errors(fn: F) -> F:
    """One clear line and a non-zero exit for user errors; tracebacks only with LRL_DEBUG=1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import os

        try:
            return fn(*args, **kwargs)
        except LrlError as err:
            if os.environ.get("LRL_DEBUG"):
                raise
            typer.echo(f"error: {_one_line(err.message)}", err=True)
            raise typer.Exit(err.exit_code) from None

    return wrapper  # type: ignore[return-value]


@app.command()
@_errors
def train(
    recipe: Annotated[str, typer.Argument(help="shipped recipe name (ppo/cartpole) or path to a YAML file")],
    overrides: Overrides = None,
    run_dir: Annotated[Path | None, typer.Option(help="default: runs/<name>/<timestamp>")] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default: local store)")] = None,
    dry_run: Annotated[bool, typer.Option(help="validate and print the resolved recipe; write nothing")] = False,
) -> None:
    """Train a recipe."""
    from lrl.launch import RunResult, setup_logging
    from lrl.launch import train as _train
    from lrl.recipe import dump

    setup_logging()
    out = _train(recipe, overrides or [], run_dir, tracking_uri, dry_run)
    if not isinstance(out, RunResult):
        typer.echo(dump(out), nl=False)
        return
    _report(out)


def _report(out: Any) -> None:
    if out.mlflow_run_id is None:  # a DDP child process
        return
    if out.interrupted:
        typer.echo(f"interrupted at {out.clock:,} {out.clock_unit}; checkpoint written. Continue with: "
                   f"lrl resume {out.run_dir}", err=True)
        return
    msg = f"done: {out.clock:,} {out.clock_unit}, run dir {out.run_dir}, MLflow run {out.mlflow_run_id}"
    if out.eval:
        msg += f", eval return {out.eval['return_mean']:.1f} ± {out.eval['return_std']:.1f}"
        if "success_rate" in out.eval:
            msg += f", success rate {out.eval['success_rate']:.2f}"
    typer.echo(msg, err=True)


@app.command()
@_errors
def resume(
    target: Annotated[str, typer.Argument(help="run directory or .ckpt file")],
    overrides: Annotated[list[str] | None, typer.Argument(help="e.g. budget.frames=200000")] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="default: the run's own")] = None,
) -> None:
    """Continue an interrupted (or finished, with a larger budget) run exactly where it stopped."""
    from lrl.launch import resume as _resume
    from lrl.launch import setup_logging

    setup_logging()
    _report(_resume(target, overrides or [], tracking_uri))


@app.command("eval")
@_errors
def eval_(
    target: Annotated[str, typer.Argument(help="run directory or .ckpt file")],
    episodes: Annotated[int, typer.Option(min=1)] = 20,
    seed: int = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    video: Annotated[Path | None, typer.Option(help="write a GIF of one episode into this directory")] = None,
    stochastic: Annotated[bool, typer.Option(help="sample actions instead of the deterministic policy")] = False,
) -> None:
    """Evaluate a checkpoint's policy (deterministic by default)."""
    from lrl.launch import evaluate_run

    result = evaluate_run(target, episodes, seed, video, deterministic=not stochastic)
    if as_json:
        typer.echo(json.dumps(result))
    else:
        typer.echo(f"{result['env']} @ {result['clock']:,} {result['clock_unit']}: "
                   f"return {result['return_mean']:.2f} ± "
                   f"{result['return_std']:.2f} over {episodes} episodes (min {result['return_min']:.1f}, "
                   f"max {result['return_max']:.1f})"
                   + (f", success rate {result['success_rate']:.2f}" if "success_rate" in result else ""))


@app.command()
@_errors
def demos(
    expert: Annotated[str, typer.Argument(help="an lrl run directory or .ckpt, or package.module:function")],
    episodes: Annotated[int, typer.Option(min=1, help="episodes to record (seeds SEED, SEED+1, ...)")],
    out: Annotated[str, typer.Option(help="new Minari dataset id, e.g. cartpole/expert-v0")],
    env: Annotated[str | None, typer.Option(help="env id (default: the expert run's env)")] = None,
    noise: Annotated[float, typer.Option(min=0.0, help="discrete: probability of a random action; continuous: "
                                         "Gaussian std as a fraction of the half action range")] = 0.0,
    seed: Annotated[int, typer.Option(min=0)] = 0,
    store: Annotated[Path | None, typer.Option(help="dataset store (default: $MINARI_DATASETS_PATH or "
                                               "~/.minari/datasets)")] = None,
    num_envs: Annotated[int, typer.Option(min=1, help="episodes run side by side")] = 1,
) -> None:
    """Record an expert's episodes into a Minari dataset (for data.name=demos)."""
    from lrl.demos import record

    typer.echo(record(expert, episodes, out, env, noise, seed, store, num_envs).summary())


@app.command("ls")
@_errors
def ls() -> None:
    """List shipped recipes and registered algorithms."""
    import yaml

    from lrl.recipe.load import find_recipe, shipped_recipes
    from lrl.recipe.registry import ALGORITHMS

    typer.echo("recipes:")
    rows = []
    for name in shipped_recipes():
        data = yaml.safe_load(find_recipe(name).read_text())
        env = (data.get("env") or {}).get("id", "-")
        unit, amount = next(iter((data.get("budget") or {"?": 0}).items()))
        rows.append((name, str(data.get("algo", {}).get("name", "?")), str(env), f"{amount:,} {unit}"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)] if rows else [0, 0, 0]
    for name, algo, env, budget in rows:
        typer.echo(f"  {name:<{widths[0]}}  {algo:<{widths[1]}}  {env:<{widths[2]}}  {budget}")
    typer.echo("algorithms: " + ", ".join(sorted(ALGORITHMS)))


@app.command()
@_errors
def show(recipe: str, overrides: Overrides = None) -> None:
    """Print the resolved recipe (every default filled in)."""
    from lrl.recipe import dump, load

    typer.echo(dump(load(recipe, overrides or [])), nl=False)


@app.command()
@_errors
def cp(recipe: str, dest: Path, force: Annotated[bool, typer.Option(help="overwrite DEST")] = False) -> None:
    """Copy a shipped recipe to DEST to edit it."""
    from lrl.recipe.load import find_recipe

    src = find_recipe(recipe)
    target = dest / src.name if dest.is_dir() else dest
    if target.exists() and not force:
        raise LrlError(f"{target} exists; pass --force to overwrite")
    shutil.copyfile(src, target)
    typer.echo(str(target))


@app.command()
@_errors
def validate(recipes: Annotated[list[str] | None, typer.Argument(help="default: all shipped")] = None) -> None:
    """Validate recipes against the schema and the algorithm signatures, without building environments."""
    from lrl.errors import RecipeError
    from lrl.recipe import load
    from lrl.recipe.load import shipped_recipes

    failed = 0
    for name in recipes or shipped_recipes():
        try:
            load(name)
            typer.echo(f"ok    {name}")
        except RecipeError as err:
            failed += 1
            typer.echo(f"FAIL  {_one_line(err.message)}", err=True)
    if failed:
        raise typer.Exit(2)


@app.command("runs")
@_errors
def runs(
    directory: Annotated[Path, typer.Argument(help="where to look for run directories, recursively")] = Path("runs"),
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON list")] = False,
) -> None:
    """List the runs under DIRECTORY: status, clock/budget, last eval return, MLflow run (marks dead runs KILLED)."""
    from lrl.launch import setup_logging
    from lrl.runs import list_runs, table

    setup_logging()
    rows = list_runs(directory)
    if as_json:
        typer.echo(json.dumps(rows))
    elif rows:
        typer.echo(table(rows))
    else:
        typer.echo(f"no runs under {directory}", err=True)


Refs = Annotated[list[str], typer.Argument(help="run directories, MLflow run ids (a parent: its children) or "
                                                 "experiment names")]
Reps = Annotated[int, typer.Option(min=2, help="bootstrap replications")]
BootstrapSeed = Annotated[int, typer.Option(help="seed of the bootstrap (same runs + seed = same intervals)")]
Metric = Annotated[str, typer.Option(help="the metric whose last value scores a run")]
TrackingUri = Annotated[str | None, typer.Option(help="MLflow store of run ids and experiments (default: as train)")]


@app.command()
@_errors
def seeds(
    recipe: Annotated[str, typer.Argument(help="shipped recipe name or YAML path")],
    seeds: Annotated[str, typer.Option("--seeds", help="0-9 (inclusive), 0,3,5 or both")],
    overrides: Overrides = None,
    jobs: Annotated[int, typer.Option(min=1, help="seeds trained at once (one process, one thread each)")] = 1,
    experiment: Annotated[str | None, typer.Option(help="MLflow experiment (default: the recipe's)")] = None,
    tracking_uri: TrackingUri = None,
    reps: Reps = 2000,
) -> None:
    """Train a recipe over several seeds (nested MLflow runs under one parent), then report them."""
    from lrl.launch import setup_logging
    from lrl.stats.report import format_report
    from lrl.stats.seeds import run_seeds

    setup_logging()
    out = run_seeds(recipe, seeds, jobs, experiment, overrides or [], tracking_uri, {"reps": reps})
    if out.report is not None:
        typer.echo(format_report(out.report))
    typer.echo(f"{len(out.finished)} of {len(out.finished) + len(out.failed)} seeds finished; parent MLflow run "
               f"{out.parent_run_id}, run dirs and report under {out.sweep_dir}", err=True)
    for seed, line in sorted(out.failed.items()):
        typer.echo(f"seed {seed} failed: {_one_line(line)}", err=True)
    if out.failed:
        raise typer.Exit(1)


@app.command()
@_errors
def report(
    refs: Refs,
    json_path: Annotated[Path | None, typer.Option("--json", help="write the report as JSON here")] = None,
    plots: Annotated[Path | None, typer.Option(help="write the PNG plots into this directory")] = None,
    metric: Metric = "eval/return_mean",
    reps: Reps = 2000,
    bootstrap_seed: BootstrapSeed = 0,
    min_: Annotated[float | None, typer.Option("--min", help="normalise: (return - min) / (max - min)")] = None,
    max_: Annotated[float | None, typer.Option("--max", help="see --min")] = None,
    known_bounds: Annotated[bool, typer.Option(help="normalise by the env's return range (classic control)")] = False,
    gap_threshold: Annotated[float | None, typer.Option(help="optimality-gap threshold in score units (default: "
                                                       "the env's reward threshold)")] = None,
    tracking_uri: TrackingUri = None,
) -> None:
    """IQM, mean, median and optimality gap with 95% bootstrap intervals, performance profile, learning curves."""
    from lrl.launch import setup_logging
    from lrl.stats.report import build_report, format_report, publish

    setup_logging()
    out = build_report(refs, tracking_uri, metric, reps, bootstrap_seed, min_, max_, known_bounds, gap_threshold)
    typer.echo(format_report(out))
    for path in publish(out, json_path, plots):
        typer.echo(f"wrote {path}", err=True)
    if out["parent_run_id"]:
        typer.echo(f"logged to parent MLflow run {out['parent_run_id']} (artifacts report/)", err=True)


@app.command()
@_errors
def compare(
    a: Annotated[str, typer.Argument(help="group A: a parent run id, an experiment, or run dirs/ids joined by ','")],
    b: Annotated[str, typer.Argument(help="group B, like A")],
    json_path: Annotated[Path | None, typer.Option("--json", help="write the result as JSON here")] = None,
    metric: Metric = "eval/return_mean",
    reps: Reps = 2000,
    bootstrap_seed: BootstrapSeed = 0,
    tracking_uri: TrackingUri = None,
) -> None:
    """Probability that a run of A ends above a run of B, with its 95% bootstrap interval, and both IQMs."""
    from lrl.launch import setup_logging
    from lrl.stats.report import build_compare, format_compare

    setup_logging()
    out = build_compare(a, b, tracking_uri, metric, reps, bootstrap_seed)
    typer.echo(format_compare(out))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(out, indent=1))
        typer.echo(f"wrote {json_path}", err=True)


@app.command()
@_errors
def sweep(
    recipe: Annotated[str, typer.Argument(help="shipped recipe name (ppo/cartpole) or path to a YAML file")],
    overrides: Overrides = None,
    trials: Annotated[int, typer.Option(min=1, help="trials in the whole study: a rerun or a second shell adds only "
                                        "the missing ones")] = 20,
    space: Annotated[str | None, typer.Option(help="search space: a YAML file or a shipped name (ppo-cartpole); "
                                              "default: the shipped one named like the recipe")] = None,
    jobs: Annotated[int, typer.Option(min=1, help="worker processes side by side (one torch thread each)")] = 1,
    study: Annotated[str | None, typer.Option(help="study name (default: the recipe's name)")] = None,
    storage: Annotated[str | None, typer.Option(help="Optuna storage: an RDB URL for several machines, or a journal "
                                                "file (default: sweeps/<study>/journal.log)")] = None,
    out: Annotated[str | None, typer.Option(help="best recipe (default: sweeps/<study>-best.yaml)")] = None,
    pruner: Annotated[str, typer.Option(help="median, halving (successive halving) or none")] = "median",
    startup_trials: Annotated[int, typer.Option(min=0, help="trials that complete before the median pruner stops "
                                                "any")] = 5,
    seed: Annotated[int | None, typer.Option(help="sampler seed (default: the recipe's seed)")] = None,
    experiment: Annotated[str | None, typer.Option(help="MLflow experiment (default: tracking.experiment)")] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default: local store)")] = None,
) -> None:
    """Tune a recipe's hyperparameters with Optuna (TPE, pruning on evaluation returns); write the best recipe."""
    from lrl.launch import setup_logging
    from lrl.sweep import prepare
    from lrl.sweep import run as _run

    setup_logging()
    cfg = prepare(recipe, overrides or [], trials, space, study, storage, out, pruner, startup_trials, seed,
                  experiment, tracking_uri)
    code, summary = _run(cfg, jobs)
    typer.echo(summary.line(trials), err=True)
    if code:
        raise typer.Exit(code)


@app.command()
@_errors
def label(
    run_dir: Annotated[Path, typer.Argument(help="the run directory (its preferences/ store) or the store itself")],
    port: Annotated[int, typer.Option(min=0, max=65535, help="0: any free port")] = 8765,
    host: Annotated[str, typer.Option(help="listen address; anything but 127.0.0.1 needs a token")] = "127.0.0.1",
    token: Annotated[str | None, typer.Option(help="required on every request (default off 127.0.0.1: a random "
                                              "one, printed)")] = None,
) -> None:
    """Serve a web page where people label a run's pairs of clips (left / right / equal / can't tell)."""
    from lrl.rlhf.label_server import serve

    serve(run_dir, port, host, token, echo=lambda line: typer.echo(line, err=True))


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
