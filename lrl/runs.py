"""A run's life on disk (docs/runs.md): ``run.json`` says which MLflow run and which process a run directory
belongs to, so a run whose process died without a word (``kill -9``, a lost machine) is recognised and its MLflow
run marked KILLED the next time ``lrl resume`` or ``lrl runs`` touches it, and ``lrl runs`` lists a directory's runs.

``run.json`` is written by rank 0 as soon as the MLflow logger has a run id (before training starts) and updated when
the run ends: ``status`` (RUNNING, FINISHED, KILLED, FAILED), ``clock``, the last evaluation's return.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger("lrl")

RUN_FILE = "run.json"
STATUSES = ("FINISHED", "RUNNING", "KILLED", "FAILED", "NO CHECKPOINT")


# --- run.json ------------------------------------------------------------------------------------------------------
def read_info(run_dir: Path) -> dict[str, Any]:
    try:
        info = json.loads((Path(run_dir) / RUN_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _write_info(run_dir: Path, info: dict[str, Any]) -> None:
    path = Path(run_dir) / RUN_FILE
    tmp = path.with_name(f".{RUN_FILE}.tmp")
    tmp.write_text(json.dumps(info, indent=1) + "\n")
    os.replace(tmp, path)


def absolute_uri(uri: str) -> str:
    """A local store named relative to the working directory, made absolute: ``lrl runs`` and ``lrl resume`` may run
    from elsewhere, and opening ``sqlite:///mlflow.db`` there would create a new, empty store."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri.removeprefix("sqlite:///")).resolve())
    if "://" not in uri and not uri.startswith("file:"):
        return str(Path(uri).resolve())
    return uri


def _proc_start(pid: int) -> str | None:
    """The process's start time (clock ticks since boot, Linux): a pid reused by another process has another."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def run_started(run_dir: Path, mlflow_run_id: str | None, tracking_uri: str) -> None:
    """Rank 0, once the logger has its run id: this process owns the run directory now (a resume takes it over)."""
    info = read_info(run_dir)
    pid = os.getpid()
    info.update({"mlflow_run_id": mlflow_run_id, "tracking_uri": absolute_uri(tracking_uri), "pid": pid,
                 "host": socket.gethostname(), "proc_start": _proc_start(pid), "status": "RUNNING",
                 "started": datetime.now().isoformat(timespec="seconds")})
    _write_info(run_dir, info)


def run_ended(run_dir: Path, status: str, clock: int | None = None, eval_result: dict[str, Any] | None = None) -> None:
    info = read_info(run_dir)
    if not info:
        return
    info.update({"status": status, "ended": datetime.now().isoformat(timespec="seconds")})
    if clock is not None:
        info["clock"] = clock
    if eval_result is not None:
        info["eval_return"] = eval_result["return_mean"]
        info["eval_clock"] = eval_result.get("clock")
    _write_info(run_dir, info)


def process_alive(info: dict[str, Any]) -> bool | None:
    """Whether the process that ran (or runs) the run is alive; None when it cannot be told (another host, no pid)."""
    pid, host = info.get("pid"), info.get("host")
    if not isinstance(pid, int) or host != socket.gethostname():
        return None
    if Path("/proc").is_dir():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return False
        if fields[0] in ("Z", "X"):  # a zombie is dead, only not yet reaped
            return False
        return info.get("proc_start") in (None, fields[19])
    return pid_alive(pid)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    return True


# --- MLflow ----------------------------------------------------------------------------------------------------------
class Stores:
    """MLflow clients by tracking URI, opened once; an unreachable store warns once and answers None."""

    def __init__(self) -> None:
        self._clients: dict[str, Any] = {}

    def client(self, uri: str | None) -> Any:
        if not uri:
            return None
        if uri not in self._clients:
            self._clients[uri] = self._open(uri)
        return self._clients[uri]

    @staticmethod
    def _open(uri: str) -> Any:
        from lrl.tracking import check_reachable

        if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
            log.warning("MLflow store %s does not exist; statuses come from the run files only", uri)
            return None
        try:
            check_reachable(uri, timeout=3.0)
            from mlflow import MlflowClient

            return MlflowClient(tracking_uri=uri)
        except Exception as err:  # an LrlError, or whatever the store raised: listing runs must go on
            log.warning("MLflow at %s is unreachable (%s); statuses come from the run files only", uri,
                        getattr(err, "message", type(err).__name__))
            return None


def mlflow_run(client: Any, run_id: str | None) -> Any:
    if client is None or not run_id:
        return None
    try:
        return client.get_run(run_id)
    except Exception:
        return None


def settle(run_dir: Path, stores: Stores | None = None, quiet: bool = False) -> Any:
    """The run directory's MLflow run (None when unknown or unreachable), after marking it KILLED when MLflow still
    says RUNNING but its process is gone: ``kill -9`` or a lost machine leaves it RUNNING forever otherwise.
    ``quiet``: no line saying so, and no look at MLflow for a run that is not dead (``lrl resume``)."""
    info = read_info(run_dir)
    dead = info.get("status") == "RUNNING" and process_alive(info) is False
    if quiet and not dead:
        return None
    stores = stores or Stores()
    client = stores.client(info.get("tracking_uri"))
    run = mlflow_run(client, info.get("mlflow_run_id"))
    if dead:
        if run is not None and run.info.status == "RUNNING":
            try:
                client.set_terminated(run.info.run_id, "KILLED")
                run = client.get_run(run.info.run_id)
                if not quiet:
                    log.warning("%s: its process (pid %s) is gone; MLflow run %s marked KILLED", run_dir,
                                info["pid"], run.info.run_id)
            except Exception as err:
                log.warning("%s: could not mark MLflow run %s KILLED (%s)", run_dir, run.info.run_id,
                            type(err).__name__)
        run_ended(run_dir, "KILLED")
    return run


# --- lrl runs --------------------------------------------------------------------------------------------------------
def find_runs(root: Path) -> list[Path]:
    """Run directories under ``root`` (a run directory holds ``recipe.yaml``), sorted by path."""
    root = Path(root)
    found = {p.parent for p in root.rglob("recipe.yaml") if p.parent.name != "checkpoints"}
    return sorted(found)


def _checkpoint_info(run_dir: Path) -> dict[str, Any] | None:
    from lrl.errors import LrlError
    from lrl.evaluate import load_checkpoint

    try:
        return dict(load_checkpoint(run_dir, warn=False)[1]["lrl"])
    except (LrlError, KeyError, TypeError):
        return None


def _budget(run_dir: Path) -> tuple[int | None, str]:
    try:
        recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text()) or {}
        unit, amount = next(iter((recipe.get("budget") or {}).items()))
        return int(float(amount)), str(unit)
    except (OSError, yaml.YAMLError, StopIteration, TypeError, ValueError, AttributeError):
        return None, "frames"


def describe(run_dir: Path, root: Path, stores: Stores) -> dict[str, Any]:
    """One row of ``lrl runs``: name, status, clock and budget, last evaluation return, MLflow run id."""
    run = settle(run_dir, stores)
    info = read_info(run_dir)
    ckpt = _checkpoint_info(run_dir)
    budget, unit = _budget(run_dir)
    clock = ckpt.get("clock", ckpt.get("frames")) if ckpt else None
    if isinstance(info.get("clock"), int) and info.get("status") != "RUNNING":
        clock = max(clock or 0, info["clock"])
    alive = info.get("status") == "RUNNING" and process_alive(info)  # an ended run's process may live on (a notebook)
    if alive:
        status = "RUNNING"
    elif ckpt is None:
        status = "NO CHECKPOINT"
    elif run is not None and run.info.status in STATUSES:
        status = run.info.status
    elif info.get("status") in STATUSES:
        status = info["status"]
    else:  # a run from before run.json, without MLflow: its checkpoint tells whether it finished its budget
        status = "FINISHED" if clock is not None and budget is not None and clock >= budget else "KILLED"
    eval_return = info.get("eval_return")
    if run is not None and "eval/return_mean" in run.data.metrics:
        eval_return = run.data.metrics["eval/return_mean"]
    run_id = info.get("mlflow_run_id") or (ckpt or {}).get("mlflow_run_id")
    name = str(run_dir.relative_to(root)) if run_dir != root else run_dir.name
    return {"name": name, "run_dir": str(run_dir), "status": status, "clock": clock, "budget": budget,
            "unit": unit, "eval_return": eval_return, "mlflow_run_id": run_id}


def list_runs(root: str | Path) -> list[dict[str, Any]]:
    from lrl.errors import RunStateError

    path = Path(root)
    if not path.is_dir():
        raise RunStateError(f"'{root}' is not a directory; pass the directory your runs are in (default: ./runs)")
    stores = Stores()
    return [describe(d, path, stores) for d in find_runs(path)]


def table(rows: list[dict[str, Any]]) -> str:
    def clock(r: dict[str, Any]) -> str:
        c = "-" if r["clock"] is None else f"{r['clock']:,}"
        b = "?" if r["budget"] is None else f"{r['budget']:,}"
        return f"{c}/{b} {r['unit']}"

    cells = [("RUN", "STATUS", "CLOCK/BUDGET", "EVAL RETURN", "MLFLOW RUN")]
    cells += [(r["name"], r["status"], clock(r), "-" if r["eval_return"] is None else f"{r['eval_return']:.1f}",
               r["mlflow_run_id"] or "-") for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)) + "  " + row[4]
                     for row in cells)
