"""Convolutional encoders for image observations (``Spec.obs_kind == "image"``, docs/atari.md). Networks put them
in front of their MLP through :func:`lrl.networks.mlp.body`, so every algorithm that builds its bodies there takes
images without code of its own.

Images arrive as raw pixel values, channels first ``[B, C, H, W]``, uint8 (rollouts and replay buffers keep them
so: a quarter of float32's memory and transfer) or float; the encoder turns them into float32 / 255 on the device.

The encoders are the convolutional part only; the fully connected layers after them are the algorithm's MLP
(``algo.hidden`` with ``algo.activation``): Mnih et al.'s network is ``encoder: nature`` with ``hidden: [512]`` and
``activation: relu``, IMPALA's ``encoder: impala`` with ``hidden: [256]``.

- ``nature``: Mnih et al. (2015), "Human-level control through deep reinforcement learning": conv 32×8×8 stride 4,
  conv 64×4×4 stride 2, conv 64×3×3 stride 1, each with ReLU (Rossi §2.4; SB3's ``NatureCNN``): 3136 features
  on 84×84 frames.
- ``impala``: Espeholt et al. (2018), IMPALA's deep residual network: three stages of 16, 32, 32 channels, each a
  3×3 conv, a 3×3 max-pool of stride 2 and two residual blocks (ReLU, conv, ReLU, conv, + input), then ReLU
  (CleanRL's ``ppo_atari_envpool_async_jax_scan_impalanet_machado``): 3872 features on 84×84 frames.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from lrl.spec import Spec

Encoder = Literal["nature", "impala"]
ENCODERS: tuple[str, ...] = ("nature", "impala")


class PixelEncoder(nn.Module):
    """Base of the encoders: scales raw pixels to [0, 1] in float32, then :attr:`net` (convolutions, flattened);
    ``out_dim`` features."""

    net: nn.Module
    out_dim: int

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., C, H, W]`` pixels -> ``[..., out_dim]`` (any leading dims: a rollout's ``[N, T]`` too)."""
        lead = x.shape[:-3]
        out = self.net(x.reshape(-1, *x.shape[-3:]).float() / 255.0)
        return out.reshape(*lead, self.out_dim)

    def _flat_dim(self, shape: tuple[int, ...]) -> int:
        with torch.no_grad():  # before out_dim exists: through net itself
            return int(self.net(torch.zeros(1, *shape)).shape[-1])


class NatureCNN(PixelEncoder):
    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(shape[0], 32, 8, stride=4), nn.ReLU(), nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(), nn.Flatten(),
        )
        self.out_dim = self._flat_dim(shape)


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv1(torch.relu(self.conv0(torch.relu(x))))


class ImpalaCNN(PixelEncoder):
    def __init__(self, shape: tuple[int, ...], channels: tuple[int, ...] = (16, 32, 32)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        last = shape[0]
        for ch in channels:
            layers += [nn.Conv2d(last, ch, 3, padding=1), nn.MaxPool2d(3, stride=2, padding=1),
                       ResidualBlock(ch), ResidualBlock(ch)]
            last = ch
        self.net = nn.Sequential(*layers, nn.ReLU(), nn.Flatten())
        self.out_dim = self._flat_dim(shape)


def make_encoder(spec: Spec, kind: str | None = None) -> PixelEncoder:
    """The encoder ``kind`` names (None: ``nature``) for the spec's ``[C, H, W]`` images."""
    kind = kind or "nature"
    if kind == "nature":
        return NatureCNN(spec.obs_shape)
    if kind == "impala":
        return ImpalaCNN(spec.obs_shape)
    raise ValueError(f"unknown encoder {kind!r}; known: {', '.join(ENCODERS)}")

