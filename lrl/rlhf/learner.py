"""Learning from preferences inside a run (docs/rlhf.md): the object an algorithm module carries when the recipe has
an ``rlhf:`` section. It is plain Python (not an ``nn.Module`` attribute of the module), so the policy's DDP wrapper
never sees the reward model's parameters; the module saves and restores it with its checkpoint.

The data sources call it through the module (``RLModule.relabel_rollout`` / ``relabel_batch``):

- every fresh rollout (the on-policy source before ``process_rollout``; the replay source before storing): cut
  segments of length k from it into a pool of recent segments, ask the labels the query schedule says are due
  (through the preference store, for the synthetic annotator too), update the reward model on its own cadence, and
  replace ``next/reward`` by r̂(s, a) so the environment's reward never reaches the learner;
- every replay minibatch: replace ``next/reward`` by the current r̂.

Under DDP rank 0 alone talks to the store, labels and trains the reward model, then broadcasts its state: every rank
relabels with identical weights.
"""

from __future__ import annotations

import logging
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tensordict import TensorDict

from lrl.errors import LrlError, RecipeError
from lrl.rlhf.annotators import SyntheticAnnotator
from lrl.rlhf.reward_model import Pairs, RewardModel, feature_dim, features
from lrl.rlhf.store import PreferenceStore
from lrl.spec import Spec

log = logging.getLogger(__name__)


class LabelTimeout(LrlError):
    exit_code = 2


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x.double().flatten(), y.double().flatten()
    x, y = x - x.mean(), y - y.mean()
    den = (x.pow(2).sum() * y.pow(2).sum()).sqrt()
    return float((x * y).sum() / den) if den > 0 else float("nan")


def cut_segments(obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor, terminated: torch.Tensor,
                 done: torch.Tensor, k: int, count: int, rng: np.random.Generator,
                 absorbing: bool) -> list[dict[str, Any]]:
    """Up to ``count`` segments of k steps from a rollout ``[N, T, ...]``, starts drawn uniformly among the valid
    ones. A segment never crosses an episode end: it ends at a truncation or at the rollout's end only when it has
    k steps by then; one that reaches a termination earlier is padded to k with absorbed steps (``absorbing``) or
    cut short (the rest marked absorbed, earning nothing)."""
    n, t_len = done.shape
    done_np, term_np = done.cpu().numpy().astype(bool), terminated.cpu().numpy().astype(bool)
    valid: list[tuple[int, int, int]] = []  # (env, start, real steps)
    for i in range(n):
        ends = np.flatnonzero(done_np[i])
        for t in range(t_len):
            later = ends[ends >= t]
            stop = int(later[0]) if len(later) else t_len  # index of the episode's last step in this rollout
            real = (stop - t + 1) if len(later) else (t_len - t)
            if real >= k:
                valid.append((i, t, k))
            elif len(later) and term_np[i, stop]:
                valid.append((i, t, real))
    if not valid:
        return []
    picks = rng.choice(len(valid), size=min(count, len(valid)), replace=False)
    out = []
    for p in sorted(picks.tolist()):
        i, t, real = valid[p]
        idx = torch.arange(t, t + k).clamp_max(t + real - 1)
        absorbed = torch.arange(k) >= real
        out.append({"obs": obs[i, idx].cpu(), "act": action[i, idx].cpu(), "absorbed": absorbed,
                    "true_return": float(reward[i, t:t + real].sum())})
    return out


class PreferenceLearner:
    """The reward model, the query schedule, the segment pool and the annotator of one run."""

    def __init__(self, cfg: Any, spec: Spec, env_cfg: Any, run_dir: Path | str, seed: int, run_id: str,
                 gamma: float, budget: int) -> None:
        self.cfg, self.spec, self.env_cfg, self.seed = cfg, spec, env_cfg, seed
        self.gamma, self.budget = gamma, budget
        self.root = Path(run_dir) / "preferences"
        self.run_id = run_id  # the store's owner: recipe name / run directory name
        self.store: PreferenceStore | None = None
        self.model = RewardModel(feature_dim(spec), members=cfg.members, hidden=list(cfg.hidden), dropout=cfg.dropout,
                                 lr=cfg.lr, l2=cfg.l2, l2_target=cfg.l2_target, adapt_l2=cfg.adapt_l2,
                                 batch_size=cfg.batch_size, seed=seed + 31337)
        self.absorbing = cfg.termination == "absorbing"
        self.model.net.use_absorbing = self.absorbing
        self.rng = np.random.default_rng([seed, 4242])
        self.pool: list[dict[str, Any]] = []
        self.reference: torch.Tensor | None = None
        self.history: dict[str, torch.Tensor] | None = None  # recent steps not yet cut into segments [N, H, ...]
        self.asked = 0  # queries asked so far: the schedule's position; query i is "q{i:06d}"
        self.updates = 0
        self.next_update = 0  # frames
        self.trained_labels = 0
        self._cache: dict[str, tuple[torch.Tensor, ...]] = {}
        self.render_frames = 0
        self._render: Any = None
        self._render_gen = torch.Generator()
        self._render_gen.manual_seed(seed + 271828)
        self.policy: Any = None  # the module's collection policy (human annotators' rendered segments)

    # --- set-up ----------------------------------------------------------------------------------------------
    @property
    def rank0(self) -> bool:
        return not _distributed() or dist.get_rank() == 0

    def open_store(self) -> None:
        """Rank 0: this run's store (another run's store is a StoreError). The owner is the recipe's name and the
        run directory's name, so a resumed run, a moved run directory and a run started again in the same
        ``--run-dir`` after waiting in vain for labels all keep their store."""
        self.store = PreferenceStore(self.root, self.run_id, self.env_cfg.id)
        if self.cfg.annotator == "human" and self._render is None:
            from lrl.rlhf.render import SegmentRenderer
            self._render = SegmentRenderer(self.env_cfg, self.seed + 99991)
            self._render.check()
        if self.cfg.annotator == "none" and not self._labelled():
            raise RecipeError(f"rlhf.annotator=none but {self.root} holds no labels yet: label the run's queries "
                              "(`lrl label RUN_DIR`) or set rlhf.annotator=synthetic or human")

    def _labelled(self) -> list[tuple[str, str]]:
        assert self.store is not None
        return [(qid, rec["label"]) for qid, rec in self.store.labels().items()
                if rec["label"] != "skip" and self._asked_yet(qid)]

    def _asked_yet(self, qid: str) -> bool:
        """This run's queries count once the schedule has asked them: a resumed run that finds labels given after
        its checkpoint (before the kill) uses each only when it asks that query again, as the straight run did.
        Queries put in the store by someone else (not ``q`` + digits) always count."""
        if len(qid) == 7 and qid[0] == "q" and qid[1:].isdigit():
            return int(qid[1:]) < self.asked
        return True

    # --- the schedule --------------------------------------------------------------------------------------------
    def due(self, clock: int) -> int:
        """Queries the schedule has asked for by ``clock``: a share up front, the rest linearly until
        ``label_until`` × budget."""
        c = self.cfg
        later = min(1.0, clock / max(1.0, c.label_until * self.budget))
        return min(c.labels, round(c.labels * (c.initial_fraction + (1 - c.initial_fraction) * later)))

    # --- per rollout -------------------------------------------------------------------------------------------
    def on_rollout(self, td: TensorDict, clock: int) -> tuple[TensorDict, dict[str, float]]:
        """``td`` a fresh rollout ``[N, T]`` (``clock``: frames before it). Returns it relabelled, and metrics."""
        metrics: dict[str, float] = {}
        true_reward = td["next", "reward"].squeeze(-1).clone()
        fresh = self._take(td, true_reward) if self.rank0 else []
        update = self._agree(self.rank0 and clock >= self.next_update and len(self.pool) >= 2)
        if update:
            if self.rank0:
                self.ask(self.due(clock), clock)
                metrics.update(self.train_model())
            self.updates += 1
            self.next_update = clock + self.cfg.update_every
            self.sync()
        td = self.relabel(td)
        if self.rank0:
            if len(fresh) > 1 and self.updates > 0:
                metrics["rm/true_corr"] = self.true_corr(fresh)
            metrics["rm/labels"] = float(self.trained_labels)
            metrics["rm/queries"] = float(self.asked)
            if self._render is not None:
                metrics["rm/render_frames"] = float(self.render_frames)
        return td, metrics

    @torch.no_grad()
    def true_corr(self, segs: list[dict[str, Any]]) -> float:
        """Pearson correlation of the learned and the true returns of recent segments (absorbed steps earn the
        absorbing reward): per segment, not per step, since an alive bonus's per-step reward is a constant."""
        net = self.model.net
        net.eval()
        x = torch.stack([features(self.spec, s["obs"], s["act"]) for s in segs])
        absorbed = torch.stack([s["absorbed"] for s in segs])
        r = net(x)
        r = torch.where(absorbed, net.absorbing_reward(), r) if self.absorbing else r.masked_fill(absorbed, 0.0)
        net.train()
        return pearson(r.sum(-1), torch.tensor([s["true_return"] for s in segs]))

    def _take(self, td: TensorDict, true_reward: torch.Tensor) -> list[dict[str, Any]]:
        """Append the rollout to the recent history of every env; once it holds ``window`` steps per env, cut
        segments from it into the pool and take a fresh reference batch (so short collection steps, as a replay
        source's, still give whole segments)."""
        done = td["next", "done"].squeeze(-1).bool()
        if td.get("mask", None) is not None:
            done = done | ~td["mask"].bool()
        part = {"obs": td["observation"].cpu(), "act": td["action"].cpu(), "rew": true_reward.cpu(),
                "term": td["next", "terminated"].squeeze(-1).bool().cpu(), "done": done.cpu()}
        self.history = part if self.history is None else {k: torch.cat([self.history[k], v], 1)
                                                             for k, v in part.items()}
        if self.history["done"].shape[1] < self.cfg.window:
            return []
        h, self.history = self.history, None
        segs = cut_segments(h["obs"], h["act"], h["rew"], h["term"], h["done"], self.cfg.segment_length,
                            self.cfg.segments_per_window, self.rng, self.absorbing)
        self.pool = (self.pool + segs)[-self.cfg.pool:]
        x = features(self.spec, h["obs"], h["act"]).reshape(-1, feature_dim(self.spec))
        self.reference = x[torch.randperm(x.shape[0], generator=self.model.gen)[:self.cfg.reference]]
        return segs

    @staticmethod
    def _absorbed_mask(td: TensorDict) -> torch.Tensor:
        mask = td.get("mask", None)
        shape = td["next", "reward"].squeeze(-1).shape
        return torch.zeros(shape, dtype=torch.bool, device=td.device) if mask is None else ~mask.bool()

    @torch.no_grad()
    def relabel(self, td: TensorDict) -> TensorDict:
        """``next/reward`` := r̂(s, a) (``termination: keep``), or with ``termination: absorbing``
        (r̂(s, a) − r̂_abs) / max(|r̂_abs|, 1): every reward shifted so that the absorbing state after a termination
        earns 0 forever (the usual episodic cut, so nothing is added at termination) and scaled so that being alive
        rather than absorbed is worth about 1 per step. A constant shift of every reward, absorbing included, and a
        positive scale leave the optimal policy unchanged; r̂ normalised (mean 0 on the reference batch) is
        otherwise a per-step reward that can be negative, which a learner escapes by ending episodes."""
        net = self.model.net
        was = net.training
        net.eval()
        device = td["observation"].device
        net.to(device)
        r = net(features(self.spec, td["observation"], td["action"]).to(device))
        if self.absorbing:
            r_abs = net.absorbing_reward()
            r = (r - r_abs) / r_abs.abs().clamp_min(1.0)
        if td.get("mask", None) is not None:
            r = r * td["mask"].to(r.dtype)
        net.train(was)
        net.to(self.model.device)
        td.set(("next", "reward"), r.unsqueeze(-1).to(td["next", "reward"].dtype))
        return td

    # --- queries and labels (rank 0) ---------------------------------------------------------------------------
    def _pairs_from_pool(self, n: int, pool: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        m = len(pool)
        if m < 2 or n <= 0:
            return []
        cand = n * (self.cfg.candidates if self.cfg.selection == "disagreement" else 1)
        a = self.rng.integers(m, size=cand)
        b = (a + 1 + self.rng.integers(m - 1, size=cand)) % m  # a different segment
        pairs = [(pool[i], pool[j]) for i, j in zip(a.tolist(), b.tolist(), strict=True)]
        if self.cfg.selection == "disagreement" and self.updates > 0:
            x1, a1, x2, a2 = self._stack(pairs)
            order = self.model.rank_disagreement(x1, a1, x2, a2)[:n]
            pairs = [pairs[i] for i in order.tolist()]
        return pairs[:n]

    def _stack(self, pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> tuple[torch.Tensor, ...]:
        def f(s: dict[str, Any]) -> torch.Tensor:
            return features(self.spec, s["obs"], s["act"])
        return (torch.stack([f(p) for p, _ in pairs]), torch.stack([p["absorbed"] for p, _ in pairs]),
                torch.stack([f(q) for _, q in pairs]), torch.stack([q["absorbed"] for _, q in pairs]))

    def ask(self, target: int, clock: int) -> None:
        """Ask queries until ``target`` have been asked; the synthetic annotator answers at once."""
        assert self.store is not None
        n = target - self.asked
        if n <= 0:
            return
        if self.cfg.annotator == "human":  # segments with frames, played by the current policy in a render env
            assert self._render is not None and self.policy is not None
            many = 2 * n * (self.cfg.candidates if self.cfg.selection == "disagreement" else 1)
            device = next(iter(self.model.net.parameters())).device
            pool = [self._render.segment(self.policy, self.cfg.segment_length, self._render_gen, device)
                    for _ in range(many)]
            self.render_frames = self._render.frames
        else:
            pool = self.pool
        pairs = self._pairs_from_pool(n, pool)
        for left, right in pairs:
            qid = f"q{self.asked:06d}"
            arrays = {"obs0": left["obs"].numpy(), "act0": left["act"].numpy(), "absorbed0": left["absorbed"].numpy(),
                      "obs1": right["obs"].numpy(), "act1": right["act"].numpy(),
                      "absorbed1": right["absorbed"].numpy()}
            clips = self._clips(left, right) if self.cfg.annotator == "human" else None
            self.store.add_query(qid, arrays, round=self.updates, clips=clips)
            if self.cfg.annotator == "synthetic":
                # randomness per query: a resumed run that finds the label already stored stays in step
                s = self.cfg.synthetic
                annot = SyntheticAnnotator(beta=s.beta, mistake=s.mistake, equal_threshold=s.equal_threshold,
                                           skip=s.skip, seed=zlib.crc32(f"{self.seed}/{qid}".encode()))
                self.store.add_label(qid, annot.label(left["true_return"], right["true_return"]), by="synthetic")
            self.asked += 1

    def _clips(self, left: dict[str, Any], right: dict[str, Any]) -> tuple[Any, Any]:
        from lrl.rlhf.render import gif_writer
        return gif_writer(left["frames"]), gif_writer(right["frames"])

    def wait_for_labels(self) -> None:
        """Human annotators: block (polling the store) until the first label arrives, or fail after the timeout."""
        assert self.store is not None
        if self._labelled():
            return
        print(f"waiting for labels: run `lrl label {self.root.parent}`", file=sys.stderr, flush=True)
        deadline = time.monotonic() + self.cfg.human.wait_seconds
        while not self._labelled():
            if time.monotonic() > deadline:
                raise LabelTimeout(f"no labels after {self.cfg.human.wait_seconds:g} s; the queries are kept in "
                                   f"{self.root}: label them (`lrl label {self.root.parent}`) and start the run again "
                                   f"with --run-dir {self.root.parent}")
            time.sleep(self.cfg.human.poll_seconds)

    def dataset(self) -> tuple[Pairs, Pairs, int]:
        """Every labelled (not skipped) pair in the store, split into training and validation by query id."""
        assert self.store is not None
        rows: list[tuple[torch.Tensor, ...]] = []
        val: list[bool] = []
        from lrl.rlhf.store import MU
        for qid, label in self._labelled():
            if qid not in self._cache:
                seg = self.store.segments(qid)
                self._cache[qid] = (features(self.spec, torch.as_tensor(seg["obs0"]), torch.as_tensor(seg["act0"])),
                                    torch.as_tensor(seg["absorbed0"]),
                                    features(self.spec, torch.as_tensor(seg["obs1"]), torch.as_tensor(seg["act1"])),
                                    torch.as_tensor(seg["absorbed1"]))
            rows.append((*self._cache[qid], torch.tensor(MU[label][0])))
            val.append(zlib.crc32(qid.encode()) % 1000 < 1000 * self.cfg.val_fraction)

        def pack(keep: list[bool]) -> Pairs:
            sel = [r for r, v in zip(rows, keep, strict=True) if v]
            d = feature_dim(self.spec)
            if not sel:
                e = torch.zeros(0, self.cfg.segment_length, d)
                m = torch.zeros(0, self.cfg.segment_length, dtype=torch.bool)
                return Pairs(e, m, e, m, torch.zeros(0))
            return Pairs(*(torch.stack([r[j] for r in sel]) for j in range(5)))

        return pack([not v for v in val]), pack(val), len(rows)

    def train_model(self) -> dict[str, float]:
        if self.cfg.annotator == "human" and self.updates == 0:
            self.wait_for_labels()
        train, val, n = self.dataset()
        self.trained_labels = n
        if len(train) == 0:
            return {}
        epochs = self.cfg.pretrain_epochs if self.updates == 0 else self.cfg.epochs
        out = self.model.fit(train, val, epochs)
        if self.reference is not None:
            self.model.net.normalise(self.reference)
        return out

    @staticmethod
    def _agree(flag: bool) -> bool:
        """Rank 0's decision, on every rank."""
        if not _distributed():
            return flag
        box = [flag]
        dist.broadcast_object_list(box, src=0)
        return bool(box[0])

    def sync(self) -> None:
        """Every rank takes rank 0's reward model (weights, normalisation, optimiser) after an update."""
        if not _distributed():
            return
        box = [self.model.state_dict() if self.rank0 else None]
        dist.broadcast_object_list(box, src=0)
        if not self.rank0 and box[0] is not None:
            self.model.load_state_dict(box[0])

    # --- checkpoint --------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "rng": self.rng.bit_generator.state, "pool": self.pool,
                "history": self.history,
                "reference": self.reference, "asked": self.asked, "updates": self.updates,
                "next_update": self.next_update, "trained_labels": self.trained_labels,
                "render_frames": self.render_frames}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.rng.bit_generator.state = state["rng"]
        self.pool, self.reference, self.history = state["pool"], state["reference"], state["history"]
        self.asked, self.updates = state["asked"], state["updates"]
        self.next_update, self.trained_labels = state["next_update"], state["trained_labels"]
        self.render_frames = state.get("render_frames", 0)
