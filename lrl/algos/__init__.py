"""Algorithms: one folder each, ``module.py`` (the LightningModule) + ``loss.py`` (pure functions)."""
