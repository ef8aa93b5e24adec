"""``lrl seeds``: one recipe over several seeds, as nested MLflow runs under one parent run, then a report.

Each seed is its own ``python -m lrl.cli train ... seed=S`` process (``--jobs`` at a time, one torch thread each
unless ``LRL_NUM_THREADS`` is set), in ``runs/<name>/seeds-<stamp>/seed-<S>``, with ``LRL_PARENT_RUN_ID`` naming the
parent run so its MLflow run is nested under it. A failing seed is reported and the others go on.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from lrl.errors import LrlError, RecipeError
from lrl.stats.runs import SEEDS_KIND, StatsInputError
from lrl.tracking.mlflow import create_parent_run, end_run

log = logging.getLogger("lrl")


def parse_seeds(text: str) -> list[int]:
    """``0-9`` (inclusive), ``0,3,5`` or both (``0-4,10``); each seed once."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        if not (lo.isdigit() and (not sep or hi.isdigit())):
            raise RecipeError(f"--seeds {text!r}: '{part}' is not a seed or a range; write e.g. 0-9 or 0,3,5")
        first, last = int(lo), int(hi) if sep else int(lo)
        if last < first:
            raise RecipeError(f"--seeds {text!r}: the range '{part}' is empty; write it low-high")
        seeds += range(first, last + 1)
    if len(set(seeds)) != len(seeds):
        raise RecipeError(f"--seeds {text!r}: a seed appears twice")
    return seeds


@dataclass
class SeedsResult:
    parent_run_id: str
    sweep_dir: Path
    finished: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)  # seed -> its last line of output
    report: dict[str, Any] | None = None


def _last_line(path: Path) -> str:
    lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1] if lines else "(no output)"


def _sweep_dir(name: str) -> Path:
    base = Path("runs") / name / f"seeds-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    out, n = base, 1
    while out.exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out


def _parent_run(uri: str, experiment: str, name: str, tags: dict[str, str], params: dict[str, str]) -> str:
    from mlflow import MlflowClient
    from mlflow.entities import Param

    run_id = create_parent_run(uri, experiment, name, tags)
    MlflowClient(tracking_uri=uri).log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
    return run_id


def run_seeds(recipe_ref: str, seeds_text: str, jobs: int = 1, experiment: str | None = None,
              overrides: list[str] | None = None, tracking_uri: str | None = None,
              report_args: dict[str, Any] | None = None) -> SeedsResult:
    from lrl.launch import train
    from lrl.recipe import Recipe
    from lrl.tracking import check_reachable, resolve_tracking_uri
    from lrl.tracking.mlflow import PARENT_RUN_ENV

    seeds = parse_seeds(seeds_text)
    if jobs < 1:
        raise RecipeError(f"--jobs {jobs}: run at least one seed at a time")
    overrides = list(overrides or [])
    if any(o.split("=", 1)[0].strip() == "seed" for o in overrides):
        raise RecipeError("seed=... is set per run by --seeds; drop it from the overrides")
    if experiment is not None:
        overrides.append(f"tracking.experiment={experiment}")
    recipe = train(recipe_ref, overrides, dry_run=True)  # the whole recipe checked before anything runs
    assert isinstance(recipe, Recipe)
    uri = resolve_tracking_uri(tracking_uri, recipe.tracking.tracking_uri)
    check_reachable(uri)

    sweep = _sweep_dir(recipe.name)
    parent = _parent_run(uri, recipe.tracking.experiment, f"{recipe.name} seeds {seeds_text}",
                         tags={"lrl.kind": SEEDS_KIND, "lrl.run_dir": str(sweep.resolve()), "lrl.seeds": seeds_text},
                         params={"recipe": recipe_ref, "seeds": seeds_text, "overrides": " ".join(overrides)[:6000],
                                 "jobs": str(jobs)})
    sweep.mkdir(parents=True)
    log.info("parent MLflow run %s (%s seeds, %d at a time), run dirs under %s", parent, len(seeds), jobs, sweep)
    env = {**os.environ, PARENT_RUN_ENV: parent, "LRL_NUM_THREADS": os.environ.get("LRL_NUM_THREADS", "1")}
    result = SeedsResult(parent, sweep)
    pending = list(seeds)
    running: dict[int, tuple[subprocess.Popen[bytes], IO[bytes], Path]] = {}
    try:
        while pending or running:
            while pending and len(running) < jobs:
                s = pending.pop(0)
                out = sweep / f"seed-{s}.log"
                log_file = out.open("wb")
                cmd = [sys.executable, "-m", "lrl.cli", "train", recipe_ref, *overrides, f"seed={s}",
                       "--run-dir", str(sweep / f"seed-{s}"), "--tracking-uri", uri]
                # a session of its own: Ctrl-C reaches this process only, which passes one SIGINT to each seed
                proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True)
                running[s] = (proc, log_file, out)
            for s, (proc, handle, out) in list(running.items()):
                if proc.poll() is None:
                    continue
                handle.close()
                del running[s]
                if proc.returncode == 0:
                    result.finished.append(s)
                    log.info("seed %d: %s", s, _last_line(out))
                else:
                    result.failed[s] = _last_line(out)
                    code = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
                    log.error("seed %d FAILED (%s): %s; full output: %s", s, code, result.failed[s], out)
            time.sleep(0.2)
    except KeyboardInterrupt:
        for proc, handle, _ in running.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # each seed checkpoints and stops
            proc.wait()
            handle.close()
        end_run(uri, parent, "KILLED")
        resumable = [str(s) for s in seeds if any((sweep / f"seed-{s}" / "checkpoints").glob("*.ckpt"))]
        raise LrlError(f"interrupted; seeds {', '.join(resumable)} stopped at a checkpoint: lrl resume "
                       f"{sweep}/seed-<S> continues one" if resumable else
                       "interrupted before any seed wrote a checkpoint") from None
    end_run(uri, parent, "FAILED" if result.failed else "FINISHED")

    if len(result.finished) < 2:
        log.warning("%d seed(s) finished: no report (intervals need at least 2 runs)", len(result.finished))
        return result
    from lrl.stats.report import build_report, publish

    try:
        result.report = build_report([parent], tracking_uri=uri, **(report_args or {}))
        publish(result.report, sweep / "report.json", sweep / "report")
    except StatsInputError as err:
        log.warning("no report: %s", err.message)
    return result
