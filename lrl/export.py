"""A finished run's deterministic policy as an MLflow ``pyfunc`` model (artifact path ``model``).

The policy is what :func:`lrl.load_policy` returns with ``deterministic=True``: observation normalisation with the
run's statistics, clipped to ``env.clip_obs``, the algorithm's ``act``, actions clipped to the action box. It is
exported with ``torch.export`` (batch size dynamic) and served by :mod:`lrl.pyfunc_policy`, which needs torch and
numpy only. Box observations only: goal (Dict) and token observations are not exported (one warning). A failed
export or registration warns once and never takes the run down (docs/videos-and-models.md).
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lrl.evaluate import Policy

log = logging.getLogger("lrl")

MODEL_PATH = "model"
PYFUNC_CODE = Path(__file__).with_name("pyfunc_policy.py")


class DeterministicPolicy(nn.Module):
    """``Policy.__call__`` (deterministic) as one torch module: float32 observations in, actions out."""

    mean: torch.Tensor
    std: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor

    def __init__(self, policy: Policy) -> None:
        super().__init__()
        self.module = policy.module
        stats = policy.obs_stats
        self.normalise = stats is not None
        if stats is not None:  # in float64, as Policy.normalize computes it, then float32
            self.register_buffer("mean", torch.as_tensor(np.asarray(stats["mean"], np.float64)))
            self.register_buffer("std", torch.sqrt(torch.as_tensor(np.asarray(stats["var"], np.float64)) + 1e-8))
        self.clip_obs = float(policy.clip_obs)
        self.clip_actions = policy._low is not None
        if policy._low is not None and policy._high is not None:
            self.register_buffer("low", torch.as_tensor(policy._low))
            self.register_buffer("high", torch.as_tensor(policy._high))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.float()
        if self.normalise:
            x = ((x.double() - self.mean) / self.std).clamp(-self.clip_obs, self.clip_obs).float()
        action = self.module.act(x, deterministic=True)
        if self.clip_actions:
            action = torch.clamp(action, self.low, self.high)
        return action


def exportable(policy: Policy) -> str | None:
    """None when the policy can be exported, else why not."""
    spec = policy.spec
    if spec.obs_kind != "box":
        return f"{spec.obs_kind} observations are not exported (box observations only)"
    if spec.action_kind not in ("discrete", "continuous"):
        return f"{spec.action_kind} actions are not exported (discrete or continuous only)"
    return None


def export_program(policy: Policy, path: Path) -> torch.export.ExportedProgram:
    """The deterministic policy as a ``torch.export`` program with a dynamic batch size, saved to ``path``."""
    module = DeterministicPolicy(policy).to("cpu").eval()
    example = torch.zeros((2, *policy.spec.obs_shape), dtype=torch.float32)
    with torch.no_grad():
        program = torch.export.export(module, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, path)
    return program


def signature(policy: Policy) -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    spec = policy.spec
    inputs = Schema([TensorSpec(np.dtype(np.float32), (-1, *spec.obs_shape))])
    if spec.action_kind == "discrete":
        outputs = Schema([TensorSpec(np.dtype(np.int64), (-1,))])
    else:
        outputs = Schema([TensorSpec(np.dtype(np.float32), (-1, spec.action_dim))])
    return ModelSignature(inputs=inputs, outputs=outputs)


def log_policy_model(policy: Policy, tracking_uri: str, run_id: str, register_as: str | None = None) -> bool:
    """Log ``policy`` to the run as the pyfunc model ``model`` (and register it as ``register_as``); False, after one
    warning, when it could not be."""
    why = exportable(policy)
    if why is not None:
        log.warning("the policy is not logged as an MLflow model: %s", why)
        return False
    quiet = logging.getLogger("mlflow.pyfunc")  # "Validating input example against model signature"
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        import mlflow

        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no progress bars on stderr
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            # the model's signature is given: MLflow's advice to infer one from type hints is noise here
            warnings.filterwarnings("ignore", message=".*type hint", category=UserWarning)
            program = Path(tmp) / "policy.pt2"
            export_program(policy, program)
            mlflow.set_tracking_uri(tracking_uri)
            with mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None):
                mlflow.pyfunc.log_model(
                    name=MODEL_PATH, python_model=str(PYFUNC_CODE), artifacts={"policy": str(program)},
                    signature=signature(policy), registered_model_name=register_as,
                    input_example=np.zeros((1, *policy.spec.obs_shape), np.float32),
                    pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}"])
        return True
    except Exception as err:  # the model is a by-product of the run: never its end
        log.warning("the policy was not logged as an MLflow model: %s: %s", type(err).__name__,
                    " ".join(str(err).split())[:300])
        return False
    finally:
        quiet.setLevel(level)
