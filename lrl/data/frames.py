"""Replay of frame-stacked image observations with each frame stored once (docs/atari.md, "Memory").

A stacked observation ``[k, H, W]`` (gymnasium's ``FrameStackObservation``: oldest frame first, padded at a reset
with the reset frame) shares ``k - 1`` frames with the one before it, and the next observation shares ``k - 1`` with
it. Storing ``observation`` and ``next/observation`` whole keeps every frame ``2k`` times; here a transition keeps
its observation's newest frame (``frame``), its next observation's newest frame (``next_frame``), its own write id
(``wid``, the TorchRL writer's running count: the slot is ``wid % capacity``) and the write id of the transition
before it in the same sub-env and episode (``prev``, -1 when its observation is a reset one). A sampled
observation is its frame and those of up to ``k - 1`` predecessors (the earliest one repeated where the episode
began: the reset padding), and its next observation is that stack shifted by one with ``next_frame`` at the end.
On Atari (k = 4, 84×84) that is 2 × 7056 bytes of frames per transition instead of 8 × 7056.

Exactness: :meth:`FrameReplay.extend` checks that consecutive observations of the collected rollout do share
their frames (a user wrapper that changes the stack would break it; one line then), and :meth:`FrameReplay.sample`
never returns a transition one of whose predecessors has already been overwritten (it draws again), so every
sampled stack is the one the env gave.
"""

from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDict
from torchrl.data import ReplayBuffer

from lrl.errors import LrlError

FIELDS = ("frame", "next_frame", "prev", "wid", "action", ("next", "reward"), ("next", "terminated"),
          ("next", "truncated"), ("next", "done"))


class FrameReplay:
    """Frame-sharing writes into and reads from a TorchRL ``ReplayBuffer`` (its storage, writer cursor and sidecar
    handling stay the replay DataModule's); ``num_envs`` sub-envs, ``stack`` frames per observation."""

    def __init__(self, buffer: ReplayBuffer, num_envs: int, stack: int, generator: torch.Generator) -> None:
        self.buffer, self.stack, self.generator = buffer, stack, generator
        self.last_wid = torch.full((num_envs,), -1, dtype=torch.int64)  # each sub-env's open transition, or -1

    def __len__(self) -> int:
        return len(self.buffer)

    def extend(self, td: TensorDict) -> None:
        """Add a collector rollout ``[N, T]`` (``observation``, ``action``, ``next/...``) as frames."""
        n, t = td.batch_size
        obs, nxt = td["observation"], td["next", "observation"]
        done = td["next", "done"].reshape(n, t).cpu()
        self._check_shared(obs, nxt, done)
        writer: Any = self.buffer.writer
        start = int(writer._write_count)  # TorchRL's running count of writes: the next write id
        wid = start + torch.arange(n * t, dtype=torch.int64).reshape(n, t)
        prev = torch.empty(n, t, dtype=torch.int64)
        prev[:, 0] = self.last_wid
        prev[:, 1:] = torch.where(done[:, :-1], -1, wid[:, :-1])
        self.last_wid = torch.where(done[:, -1], -1, wid[:, -1])
        device = obs.device
        out = TensorDict({
            "frame": obs[:, :, -1], "next_frame": nxt[:, :, -1], "prev": prev.to(device), "wid": wid.to(device),
            "action": td["action"],
            "next": {k: td["next", k] for k in ("reward", "terminated", "truncated", "done")},
        }, batch_size=[n, t], device=device)
        self.buffer.extend(out.reshape(-1))

    def _check_shared(self, obs: torch.Tensor, nxt: torch.Tensor, done: torch.Tensor) -> None:
        """The frames this storage assumes shared are: next stack = this stack shifted by one, and the next step's
        stack = this next stack unless an episode ended in between."""
        ok = torch.equal(nxt[:, :, :-1], obs[:, :, 1:])
        if ok and obs.shape[1] > 1:
            cont = ~done[:, :-1].to(obs.device)
            ok = torch.equal(obs[:, 1:][cont], nxt[:, :-1][cont])
        if not ok:
            raise LrlError("replay: consecutive Atari observations do not share their frames as a frame stack does; "
                           "a wrapper in env.wrappers changes the stacked frames: remove it or drop env.atari")

    def sample(self, batch: int) -> TensorDict:
        """``batch`` transitions drawn uniformly (with the DataModule's generator) with whole observations."""
        storage: Any = self.buffer.storage
        data = storage._storage  # TorchRL's TensorDict of all slots (no public accessor for whole columns)
        size, cap = len(self.buffer), storage.max_size
        wid, prev = data["wid"], data["prev"]
        idx = torch.randint(size, (batch,), generator=self.generator)
        chain = self._chains(idx.to(wid.device), wid, prev, cap)
        for _ in range(100):  # transitions whose earlier frames were overwritten: draw those again
            bad = chain[:, 0] < 0
            if not bool(bad.any()):
                break
            redraw = torch.randint(size, (int(bad.sum()),), generator=self.generator).to(wid.device)
            chain[bad] = self._chains(redraw, wid, prev, cap)
        else:
            raise LrlError("replay: no intact frame stack found in 100 draws; the buffer is too small")
        return self.gather(chain)

    def gather(self, chain: torch.Tensor) -> TensorDict:
        """The transitions of intact ``[B, stack]`` chains (:meth:`_chains`), observations rebuilt."""
        storage: Any = self.buffer.storage
        data = storage._storage
        batch = chain.shape[0]
        slots = chain.flip(1)  # oldest first
        obs = data["frame"][slots]
        newest = slots[:, -1]
        nxt = torch.cat([obs[:, 1:], data["next_frame"][newest].unsqueeze(1)], dim=1)
        return TensorDict({
            "observation": obs, "action": data["action"][newest],
            "next": {"observation": nxt, **{k: data["next", k][newest]
                                            for k in ("reward", "terminated", "truncated", "done")}},
        }, batch_size=[batch], device=obs.device)

    def _chains(self, idx: torch.Tensor, wid: torch.Tensor, prev: torch.Tensor, cap: int) -> torch.Tensor:
        """``[B, stack]`` slots: each transition's, then its predecessors' (the earliest repeated where the
        episode began); a row of -1 where a predecessor was overwritten."""
        cols, cur = [idx], idx
        broken = torch.zeros_like(idx, dtype=torch.bool)
        for _ in range(self.stack - 1):
            p = prev[cur]
            has = p >= 0
            slot = torch.where(has, p % cap, cur)
            broken |= has & (wid[slot] != p)
            cur = torch.where(has & ~broken, slot, cur)
            cols.append(cur)
        out = torch.stack(cols, dim=1)
        out[broken] = -1
        return out

    # --- checkpoint state (in the buffer's sidecar) -------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"last_wid": self.last_wid.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_wid = state["last_wid"].clone()
