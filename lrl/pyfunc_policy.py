"""An lrl policy as an MLflow ``pyfunc`` model, loadable with torch, numpy and MLflow alone (no lrl).

This file is the model's code (MLflow "models from code"): :mod:`lrl.export` logs it beside the policy, a
``torch.export`` program (``policy.pt2``) of the deterministic policy with the run's observation normalisation and
action clipping inside. ``predict`` takes a batch of observations, float32 ``[n, *obs_shape]``, and returns the
actions: int64 ``[n]`` for discrete actions, float32 ``[n, action_dim]`` for continuous ones. It must not import
lrl: a model is served where lrl is not installed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel


class TorchPolicy(PythonModel):
    def load_context(self, context: Any) -> None:
        self.program = torch.export.load(context.artifacts["policy"]).module()

    def predict(self, context, model_input: np.ndarray, params=None) -> np.ndarray:  # type: ignore[no-untyped-def]
        # hints: np.ndarray, from which MLflow infers no schema (the logged signature is the schema); MLflow warns
        # about any other hint here
        obs = torch.as_tensor(np.asarray(model_input, dtype=np.float32))
        with torch.no_grad():
            return self.program(obs).numpy()


set_model(TorchPolicy())
