"""MLflow tracking: logger set-up, reachability check, artifacts."""

from lrl.tracking.mlflow import check_reachable, log_run_artifacts, make_logger, resolve_tracking_uri

__all__ = ["check_reachable", "log_run_artifacts", "make_logger", "resolve_tracking_uri"]
