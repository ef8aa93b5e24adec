"""The global random states a rank's checkpoint carries (Lightning saves none of them).

Python's, NumPy's and torch's CPU generators, plus the CUDA generator of the rank's own device when it trains on
one: SAC's reparameterised actions, TD3's target smoothing and dropout draw from it, so without it a resumed GPU
run would not continue the interrupted one.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)


def rng_state(device: torch.device) -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
    elif device.type == "cuda" or "cuda" in state:
        log.warning("resumed on %s from a checkpoint taken on %s: the CUDA random stream starts afresh, so this "
                    "run will not be bit-identical to an uninterrupted one", device.type,
                    "cuda" if "cuda" in state else "cpu")


def trainer_device(datamodule: Any) -> torch.device:
    """The device of the module a DataModule feeds (CPU before it is attached to a trainer)."""
    trainer = getattr(datamodule, "trainer", None)
    return trainer.lightning_module.device if trainer is not None and trainer.lightning_module else torch.device("cpu")
