"""MLflow through Lightning's ``MLFlowLogger``; frames are the step axis of every metric.

Default store: MLflow's own default tracking URI (a local store in the working directory, which ``mlflow ui``
started there shows). ``--tracking-uri`` / ``MLFLOW_TRACKING_URI`` point at a server, which is checked before
anything is written, so an unreachable server fails in one line instead of after an hour of training.
"""

from __future__ import annotations

import logging
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from lrl.errors import LrlError

log = logging.getLogger(__name__)

PARENT_RUN_ENV = "LRL_PARENT_RUN_ID"  # a new run becomes a nested run of this MLflow run (``lrl seeds`` sets it)


def resolve_tracking_uri(cli_uri: str | None, recipe_uri: str | None) -> str:
    if cli_uri:
        return cli_uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    if recipe_uri:
        return recipe_uri
    import mlflow

    return str(mlflow.get_tracking_uri())


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """A tracking server that does not answer, or a local store MLflow will not open, fails here in one line,
    before anything is written."""
    if not uri.startswith(("http://", "https://")):
        _check_store(uri)
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as resp:
            if resp.status >= 400:
                raise LrlError(f"MLflow tracking server {uri} answered {resp.status} on /health")
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise LrlError(f"MLflow tracking server {uri} is unreachable ({reason}); start it or pass another "
                       "--tracking-uri") from None


def _check_store(uri: str) -> None:
    """Open the store as the logger will: MLflow 3 refuses ``file:`` stores unless ``MLFLOW_ALLOW_FILE_STORE=true``,
    and any URI scheme it does not know."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from lrl.tracking.logger import one_line

    try:
        MlflowClient(tracking_uri=uri)
    except MlflowException as err:
        raise LrlError(f"MLflow refuses tracking URI {uri}: {one_line(err.message)}") from None


def make_logger(uri: str, experiment: str, run_name: str | None, run_id: str | None = None,
                tags: dict[str, Any] | None = None) -> Any:
    from lrl.tracking.logger import LrlMLFlowLogger

    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    return LrlMLFlowLogger(experiment_name=experiment, run_name=run_name, tracking_uri=uri, run_id=run_id,
                        tags=tags, log_model=False)


def parent_tags() -> dict[str, str]:
    """``mlflow.parentRunId`` for a new run started with ``LRL_PARENT_RUN_ID`` set: MLflow shows it nested under that
    run, and ``lrl report <parent id>`` takes its children. Empty without the variable."""
    parent = os.environ.get(PARENT_RUN_ENV, "").strip()
    return {"mlflow.parentRunId": parent} if parent else {}


def create_parent_run(uri: str, experiment: str, name: str, tags: dict[str, str]) -> str:
    """A run that groups others (``lrl seeds``, ``lrl sweep``): created in ``experiment`` (made if missing), RUNNING
    until :func:`end_run`. MLflow's refusal becomes one line."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from lrl.tracking.logger import one_line

    try:
        client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name(experiment)
        exp_id = exp.experiment_id if exp is not None else client.create_experiment(experiment)
        return str(client.create_run(exp_id, run_name=name, tags=tags).info.run_id)
    except MlflowException as err:
        raise LrlError(f"MLflow refused the parent run: {one_line(err.message)} (experiment {experiment!r})") from None


def end_run(uri: str, run_id: str, status: str) -> None:
    """Mark a run FINISHED / KILLED / FAILED; a store that refuses is a warning, never an error (the runs it
    groups are what matters)."""
    try:
        from mlflow import MlflowClient

        MlflowClient(tracking_uri=uri).set_terminated(run_id, status)
    except Exception as err:
        log.warning("MLflow: could not mark run %s %s (%s)", run_id, status, err)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def learning_curve(client: Any, run_id: str, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    drawn = False
    for key, label in (("train/episode_return", "train episode return"), ("eval/return_mean", "eval return")):
        hist = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
        if hist:
            ax.plot([m.step for m in hist], [m.value for m in hist], label=label, marker="." if "eval" in key else None)
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("environment frames")
    ax.set_ylabel("return")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def log_run_artifacts(logger: Any, run_dir: Path, policy_path: Path | None) -> None:
    """Resolved recipe, learning-curve plot and the final policy checkpoint as artifacts of the run."""
    client, run_id = logger.experiment, logger.run_id
    client.log_artifact(run_id, str(run_dir / "recipe.yaml"))
    with tempfile.TemporaryDirectory() as tmp:
        plot = learning_curve(client, run_id, Path(tmp) / "learning_curve.png")
        if plot is not None:
            client.log_artifact(run_id, str(plot))
    if policy_path is not None and policy_path.is_file():
        client.log_artifact(run_id, str(policy_path), artifact_path="policy")
