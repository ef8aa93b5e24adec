"""Dataset files and the shuffled, rank-sharded stream over one (the offline source and ``data.streams`` use it).

A dataset file holds a mapping of equally long tensors (TorchRL's flat key names: ``observation``, ``action``,
``next/observation``, ...) and the spec of what it describes, written by :func:`save_dataset` and read with
``torch.load(weights_only=True)``, so a file from elsewhere can hold nothing but tensors and plain values.

Sampling: every pass draws one permutation of the whole dataset from the stream's own generator (the same on
every rank); rank ``r`` of ``W`` takes every ``W``-th index of it, in minibatches of ``batch_size / W``, and a pass
ends when the next minibatch would not be full. The state (generator at the start of the pass, position, passes)
is in every checkpoint, so a resumed run draws exactly what the uninterrupted one would have.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tensordict import TensorDict

from lrl.errors import RecipeError
from lrl.spec import Spec, spec_from_dict

FORMAT = "lrl.dataset/1"


def save_dataset(path: str | Path, data: dict[str, torch.Tensor], spec: Spec) -> Path:
    """Write a dataset file atomically (a temporary name, then a rename): a crash never leaves half a file."""
    path = Path(path)
    n = {len(v) for v in data.values()}
    if len(n) != 1 or 0 in n:
        raise ValueError(f"dataset tensors must be non-empty and equally long (got lengths {sorted(n)})")
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"format": FORMAT, "spec": spec.to_dict(), "data": {k: v.detach().cpu() for k, v in data.items()}}, tmp)
    os.replace(tmp, path)
    return path


def load_dataset(path: str | Path, what: str = "data.path") -> tuple[dict[str, torch.Tensor], Spec]:
    """Read a dataset file; anything wrong with it is one :class:`RecipeError` line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{what}={path}: no such dataset file")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors of every kind: not a dataset written by save_dataset
        raise RecipeError(f"{what}={path}: not a readable lrl dataset ({type(err).__name__})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT or not isinstance(raw.get("data"), dict):
        raise RecipeError(f"{what}={path}: not an lrl dataset (expected format {FORMAT}; write it with "
                          "lrl.data.offline.save_dataset)")
    data = raw["data"]
    lengths = {len(v) if isinstance(v, torch.Tensor) and v.dim() > 0 else -1 for v in data.values()}
    if not data or len(lengths) != 1 or min(lengths) < 1:
        raise RecipeError(f"{what}={path}: dataset tensors must be non-empty and equally long")
    return data, spec_from_dict(raw["spec"])


def as_tensordict(flat: dict[str, torch.Tensor]) -> TensorDict:
    """Flat ``next/observation``-style names → a nested TensorDict batched over the samples."""
    return TensorDict({tuple(k.split("/")): v for k, v in flat.items()}, batch_size=[len(next(iter(flat.values())))])


class OfflineStream:
    """Shuffled passes over one dataset file, sharded across ranks (see the module docstring)."""

    def __init__(self, *, name: str, seed: int, path: str | None = None, batch_size: int = 256,
                 loader: Callable[[], dict[str, torch.Tensor]] | None = None) -> None:
        """``path``: a dataset file (:func:`load_dataset`); or ``loader``: returns the flat tensors itself (a Minari
        dataset, a DAgger aggregate); read once, at :meth:`setup`."""
        if batch_size < 1:
            raise RecipeError(f"data.streams.{name}.batch_size={batch_size}: must be >= 1")
        if (path is None) == (loader is None):
            raise ValueError("OfflineStream: give exactly one of path and loader")
        self.name, self.path, self.batch_size, self.loader = name, path, batch_size, loader
        self.generator = torch.Generator().manual_seed(seed + 104_723)
        self.data: TensorDict | None = None
        self.rank, self.world = 0, 1
        self.pos = 0  # minibatches handed out in the current pass
        self.passes = 0  # passes begun
        self._pass_start = self.generator.get_state()
        self._order: torch.Tensor | None = None

    def setup(self, rank: int, world: int, device: torch.device) -> None:
        if self.data is None:
            if self.loader is not None:
                raw = self.loader()
            else:
                assert self.path is not None
                what = "data.path" if self.name == "main" else f"data.streams.{self.name}.path"
                raw, _ = load_dataset(self.path, what)
            self.data = as_tensordict(raw).to(device)
        self.rank, self.world = rank, world
        if self.batch_size % world or self.per_pass < 1:
            raise RecipeError(f"{self.name}: batch_size={self.batch_size} must be divisible by the number of processes "
                              f"({world}) and at most the dataset size ({len(self)})")

    def replace_data(self, data: TensorDict) -> None:
        """Swap in a new dataset (e.g. DAgger's grown aggregate); the next minibatch begins a new pass over it."""
        self.data, self._order = data, None
        if self.batch_size % self.world or self.per_pass < 1:
            raise RecipeError(f"{self.name}: batch_size={self.batch_size} must be divisible by the number of processes "
                              f"({self.world}) and at most the dataset size ({len(self)})")

    def __len__(self) -> int:
        return 0 if self.data is None else int(self.data.batch_size[0])

    @property
    def per_pass(self) -> int:
        """Full minibatches per pass on each rank."""
        return (len(self) // self.world) // (self.batch_size // self.world)

    @property
    def at_boundary(self) -> bool:
        """The next minibatch begins a new pass."""
        return self._order is None or self.pos >= self.per_pass

    def _begin_pass(self) -> None:
        self._pass_start = self.generator.get_state()
        self._order = torch.randperm(len(self), generator=self.generator)[self.rank::self.world]
        self.pos, self.passes = 0, self.passes + 1

    def next(self) -> TensorDict:
        assert self.data is not None, "stream used before setup()"
        if self.at_boundary:
            self._begin_pass()
        assert self._order is not None
        per_rank = self.batch_size // self.world
        idx = self._order[self.pos * per_rank:(self.pos + 1) * per_rank]
        self.pos += 1
        return self.data[idx.to(self.data.device)]

    def state_dict(self) -> dict[str, Any]:
        return {"pass_start": self._pass_start, "pos": self.pos, "passes": self.passes,
                "started": self._order is not None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["pass_start"])
        self.pos, self.passes, self._order = state["pos"], state["passes"] - 1, None
        if state["started"]:
            pos = self.pos
            self._begin_pass()  # the same permutation again, from the generator state at the pass's start
            self.pos = pos
        else:
            self.passes = state["passes"]
