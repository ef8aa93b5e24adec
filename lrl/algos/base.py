"""Plumbing shared by every algorithm module: the spec, metrics aggregated on device and logged with
frames as the step axis, and the acting interface used by collection, evaluation and ``lrl.load_policy``.

Holds no algorithm logic (at most one level of inheritance, plumbing only).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from torch import nn

from lrl.contract import Batch, Consumes, data_source
from lrl.spec import Spec

if TYPE_CHECKING:
    from lrl.networks.heads import StochasticPolicy


class RLModule(L.LightningModule):
    """Implements :class:`lrl.contract.Learner`; each algorithm declares what it consumes in ``consumes``."""

    consumes: Consumes = Consumes(sources=("onpolicy",))

    def __init__(self, spec: Spec) -> None:
        super().__init__()
        self.spec = spec
        self.log_every = 2048  # set by the launcher from tracking.log_every (clock units)
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}
        self._episodes: list[tuple[float, int]] = []
        self._last_log: tuple[int, float] | None = None
        self._first_flush = False  # set at train start: flush the first rollout whatever log_every says
        self.clock = 0  # the data source's clock (env frames, gradient steps, ...): schedules, the log axis

    @classmethod
    def check_hparams(cls, args: dict[str, Any]) -> None:
        """Relations between the algorithm's own resolved arguments, checked by ``lrl validate`` (e.g.
        ``policy_epochs <= epochs``); one :class:`lrl.errors.RecipeError` line when they do not hold."""

    @property
    def hp(self) -> Any:
        """The constructor's hyperparameters (``self.hparams``), typed loosely for attribute access."""
        return self.hparams

    # --- acting (collection, evaluation, exported policy) ---------------------------------------------------
    def collection_policy(self) -> nn.Module:
        """A plain module ``(obs, generator) -> {"action": ..., ...}`` that explores."""
        raise NotImplementedError

    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        """Actions for a batch of (normalised) observations, used by evaluation and ``lrl.load_policy``."""
        raise NotImplementedError

    # --- the policy another run may start from (``algo.init_from``, docs/bc.md) -----------------------------------
    def policy_network(self) -> StochasticPolicy | None:
        """The stochastic policy (an MLP body and a categorical or diagonal-Gaussian head) that ``algo.init_from``
        copies out of a checkpoint and into a new run; None for algorithms without one (Q-learning, deterministic or
        tanh-squashed actors). Behavioural cloning and the policy-gradient family share this structure, so a cloned
        policy can be fine-tuned by RL (Rossi §13.3)."""
        return None

    @classmethod
    def has_policy_network(cls) -> bool:
        """Whether the class overrides :meth:`policy_network` (checked by ``lrl validate``, nothing built)."""
        return cls.policy_network is not RLModule.policy_network

    def load_policy_state(self, state: dict[str, torch.Tensor]) -> None:
        """Start the policy from another run's (``StochasticPolicy.policy_state``). An algorithm that keeps a copy
        of its policy (off-policy PG's behaviour policy) overrides this to refresh the copy too."""
        net = self.policy_network()
        if net is None:
            raise TypeError(f"{type(self).__name__} has no stochastic policy to load")
        net.load_policy_state(state)

    def process_rollout(self, td: Any) -> Any:
        """Annotate a fresh rollout (no gradients): values, advantages, ... Default: unchanged."""
        return td

    # --- learning from preferences (docs/rlhf.md): the sources relabel through these ----------------------------
    def attach_reward_learner(self, reward_learner: Any) -> None:
        """Train on a learned reward (``rlhf:``): a plain object, deliberately not a registered submodule, so the
        policy's DDP wrapper never sees the reward model's parameters; saved with the module's checkpoint."""
        object.__setattr__(self, "_reward_learner", reward_learner)

    @property
    def reward_learner(self) -> Any:
        return self.__dict__.get("_reward_learner")

    def relabel_rollout(self, td: Any) -> Any:
        """A fresh rollout ``[N, T]`` from the source, before ``process_rollout``: with a reward learner, its
        ``next/reward`` becomes the learned r̂ (and the learner takes its segments, labels and updates)."""
        rl = self.reward_learner
        if rl is None:
            return td
        if rl.policy is None:
            rl.policy = self.collection_policy()
        if rl.store is None and rl.rank0:
            rl.open_store()
        td, metrics = rl.on_rollout(td, self.clock)
        self.record(**{k: v for k, v in metrics.items() if v == v})  # NaN: nothing to report yet
        return td

    def relabel_batch(self, td: Any) -> Any:
        """A replay minibatch: ``next/reward`` becomes the current r̂ (the learner always learns from the latest)."""
        rl = self.reward_learner
        return td if rl is None else rl.relabel(td)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.reward_learner is not None:
            checkpoint["rlhf"] = self.reward_learner.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.reward_learner is not None and "rlhf" in checkpoint:
            self.reward_learner.load_state_dict(checkpoint["rlhf"])

    def set_clock(self, clock: int) -> None:
        """Called by the data source before it collects, so exploration schedules act on the current clock."""
        self.clock = clock

    @property
    def discount(self) -> float | None:
        gamma = getattr(self.hp, "gamma", None)
        return None if gamma is None else float(gamma)

    def next_batch(self, dataloader_iter: Iterator[Any]) -> Batch:
        """The training_step preamble: pull the next batch (nothing is produced ahead, docs/contract.md), follow its
        clock and keep the episodes that finished before it for the metrics."""
        batch: Batch = next(dataloader_iter)[0]
        self.clock = batch.clock
        if batch.episodes:
            self.add_episodes(batch.episodes)
        return batch

    # --- metrics -----------------------------------------------------------------------------------------------
    def record(self, **metrics: torch.Tensor | float) -> None:
        """Accumulate scalars on device; nothing leaves the device until :meth:`flush_metrics`."""
        for k, v in metrics.items():
            v = v.detach().float() if isinstance(v, torch.Tensor) else torch.tensor(float(v))
            self._sums[k] = self._sums[k] + v if k in self._sums else v
            self._counts[k] = self._counts.get(k, 0) + 1

    def add_episodes(self, episodes: list[tuple[float, int]]) -> None:
        self._episodes.extend(episodes)

    def on_train_start(self) -> None:
        # the first rollout after a (re)start gets its own metric point, and its rate is measured from the start
        self._last_log = (data_source(self.trainer).clock, time.perf_counter())
        self._first_flush = True

    def on_train_end(self) -> None:
        self.flush_metrics(force=True)  # the last frames get their metrics too

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if data_source(self.trainer).at_boundary:
            self.flush_metrics()  # once per rollout / collection step, not per minibatch

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer, gradient_clip_val: Any = None,
                                    gradient_clip_algorithm: Any = None) -> None:
        """Global grad-norm clipping by the algorithm's ``max_grad_norm`` when it has one (Lightning's
        automatic optimisation calls this; bf16 unscaling is handled there); otherwise Lightning's own."""
        if not hasattr(self.hp, "max_grad_norm"):
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        elif self.hp.max_grad_norm is not None:
            self.clip_gradients(optimizer, gradient_clip_val=self.hp.max_grad_norm, gradient_clip_algorithm="norm")

    def scheduled_lr(self, progress_remaining: float) -> float:
        """Set the optimiser's step size for the coming update phase: ``hp.lr``, times the fraction of the budget
        still ahead under ``lr_schedule: linear`` (SB3's linear schedule); returned for logging."""
        lr = self.hp.lr * progress_remaining if self.hp.lr_schedule == "linear" else self.hp.lr
        for group in self.optimizers().optimizer.param_groups:  # type: ignore[union-attr]
            group["lr"] = lr
        return float(lr)

    def flush_metrics(self, force: bool = False) -> dict[str, float] | None:
        """Log the means of what was recorded since the last flush, at step = global frames."""
        now = time.perf_counter()
        if self._last_log is None:
            self._last_log = (self.clock, now)
        last_frames, last_time = self._last_log
        first, self._first_flush = self._first_flush, False
        if not force and not first and self.clock - last_frames < self.log_every:
            return None
        out = {k: (self._sums[k] / self._counts[k]).item() for k in self._sums}
        if self._episodes:
            returns = torch.tensor([r for r, _ in self._episodes])
            out["train/episode_return"] = returns.mean().item()
            out["train/episode_length"] = float(sum(n for _, n in self._episodes)) / len(self._episodes)
            if self.reward_learner is not None:  # the env's own return: logged, never learned from
                out["train/true_return"] = out["train/episode_return"]
        if now > last_time and self.clock > last_frames:
            out["perf/fps"] = (self.clock - last_frames) / (now - last_time)
        self._sums, self._counts, self._episodes = {}, {}, []
        self._last_log = (self.clock, now)
        if out and self.trainer.is_global_zero:
            for logger in self.trainer.loggers:
                logger.log_metrics(out, step=self.clock)
        return out

    # --- helpers the algorithms share (kept here, after the plumbing) ---------------------------------------------
    @staticmethod
    def maybe_compile(fn: Any, enabled: bool) -> Any:
        """``torch.compile(fn)`` when ``enabled`` (the algorithms' ``compile`` argument), else ``fn`` itself."""
        return torch.compile(fn) if enabled else fn

    def adam(self, params: torch.optim.optimizer.ParamsT, lr: float, eps: float) -> torch.optim.Adam:
        """Adam, fused where the device has the kernel: ~30 % faster. Under mixed precision only when this module
        does not clip gradients: Lightning's mixed-precision plugin refuses to clip for a fused optimiser."""
        fused = self.device.type in ("cpu", "cuda") and not ("mixed" in str(self.trainer.precision)
                                                             and self.clips_gradients())
        return torch.optim.Adam(params, lr=lr, eps=eps, fused=fused)

    def clips_gradients(self) -> bool:
        """Whether gradients get clipped: by the algorithm's ``max_grad_norm`` when it has one, else by the
        Trainer's ``gradient_clip_val`` (see :meth:`configure_gradient_clipping`)."""
        if hasattr(self.hp, "max_grad_norm"):
            return self.hp.max_grad_norm is not None
        return bool(self.trainer.gradient_clip_val)

    def adam_pair(self, actor: nn.Module, critic: nn.Module, actor_lr: float, critic_lr: float,
                  eps: float) -> list[torch.optim.Optimizer]:
        """:meth:`adam` for the actor and for the critic(s), in that order (manual optimisation)."""
        return [self.adam(actor.parameters(), actor_lr, eps), self.adam(critic.parameters(), critic_lr, eps)]

    def manual_step(self, opt: Any, loss: torch.Tensor, max_grad_norm: float | None) -> None:
        """One optimiser step under manual optimisation: zero, backward (Lightning's: precision, DDP), clip, step."""
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if max_grad_norm is not None:
            self.clip_gradients(opt, gradient_clip_val=max_grad_norm, gradient_clip_algorithm="norm")
        opt.step()
