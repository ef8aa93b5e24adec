"""Several seeds and honest statistics: runs read back from MLflow, aggregated with rliable (docs/statistics.md)."""
