"""lrl: deep reinforcement learning on PyTorch Lightning and TorchRL.

Python API: ``lrl.load_policy(run_dir_or_ckpt)`` returns a numpy-in, numpy-out policy. Heavy imports are lazy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from lrl.evaluate import Policy


def load_policy(target: Any, deterministic: bool = True, device: str = "cpu") -> Policy:
    """The trained policy of a run directory or ``.ckpt`` file as ``actions = policy(observations)``."""
    from lrl.evaluate import load_policy as _load

    return _load(target, deterministic=deterministic, device=device)


__all__ = ["__version__", "load_policy"]
