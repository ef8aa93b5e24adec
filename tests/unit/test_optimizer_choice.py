"""Which Adam a module builds: fused where the device has the kernel, except under mixed precision when the module
clips gradients (Lightning's mixed-precision plugin refuses to clip for a fused optimiser)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from lrl.algos.base import RLModule
from lrl.algos.ppo.module import PPO
from lrl.algos.sac.module import SAC
from lrl.spec import Spec

CONTINUOUS = Spec("Toy-v0", (3,), "continuous", 2, (-2.0, -1.0), (2.0, 1.0))


def _fused(m: RLModule, precision: str, gradient_clip_val: float | None = None) -> list[bool]:
    m.trainer = SimpleNamespace(precision=precision, gradient_clip_val=gradient_clip_val)  # type: ignore[assignment]
    built = m.configure_optimizers()
    opts = built if isinstance(built, list) else [built]
    assert all(isinstance(o, torch.optim.Adam) for o in opts)
    return [bool(o.defaults["fused"]) for o in opts]


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed", "16-mixed"])
def test_no_clipping_keeps_fused_adam(precision: str) -> None:
    assert _fused(SAC(CONTINUOUS), precision) == [True]
    assert _fused(PPO(CONTINUOUS, max_grad_norm=None), precision) == [True]


def test_clipping_under_mixed_precision_gets_plain_adam() -> None:
    assert _fused(PPO(CONTINUOUS, max_grad_norm=0.5), "32-true") == [True]
    assert _fused(PPO(CONTINUOUS, max_grad_norm=0.5), "bf16-mixed") == [False]
    # an algorithm without its own max_grad_norm clips by the Trainer's gradient_clip_val
    assert _fused(SAC(CONTINUOUS), "bf16-mixed", gradient_clip_val=1.0) == [False]
    assert _fused(SAC(CONTINUOUS), "32-true", gradient_clip_val=1.0) == [True]
