"""Deep Q-learning with replay and a target network (Rossi ch. 2; Mnih et al. 2015), with Double DQN
(van Hasselt et al. 2016) and the seed's two-network Double Q-learning (§2.8, Alg. 2.5/2.6) as options.

The replay DataModule collects with :meth:`collection_policy` (ε-greedy over the online Q, ε a function of
frames) and hands out minibatches; each ``training_step`` takes a collection step's ``updates_per_step``
semi-gradient steps on the Huber (or squared) TD error, one per minibatch (manual optimisation:
``manual_backward`` and ``clip_gradients`` keep DDP gradient averaging, bf16 and grad-norm clipping the
Trainer's). After each step the target network is refreshed: a hard copy every ``target_update_every`` updates
(Alg. 2.2) or Polyak averaging with weight ``tau`` (Alg. 2.3), or no target network at all (Alg. 2.1: the online
network, detached, gives the targets). A truncated transition bootstraps from Q(final observation); a terminated
one does not.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import torch
from torch import nn

from lrl.algos.base import RLModule
from lrl.algos.dqn.loss import q_target
from lrl.contract import ROLLOUT_KEYS, Consumes, data_source
from lrl.estimators.losses import td_loss
from lrl.networks import body
from lrl.networks.encoders import Encoder
from lrl.networks.q import EpsilonGreedy, epsilon
from lrl.networks.target import hard_update_, make_target, polyak_update_
from lrl.spec import EnvSpec


class DQN(RLModule):
    consumes = Consumes(sources=("replay",), keys=ROLLOUT_KEYS, actions=("discrete",), observations=("box", "image"))

    def __init__(
        self, spec: EnvSpec, *,
        lr: float = 1e-4, lr_schedule: Literal["constant", "linear"] = "constant", gamma: float = 0.99,
        hidden: list[int] | None = None, activation: str = "relu",
        target: Literal["max", "double_dqn", "double_q"] = "max", loss: Literal["huber", "mse"] = "huber",
        target_update: Literal["hard", "polyak", "none"] = "hard", target_update_every: int = 10_000,
        tau: float = 0.01, eps_start: float = 1.0, eps_end: float = 0.05, eps_decay_frames: int = 10_000,
        eps_schedule: Literal["linear", "exponential"] = "linear", max_grad_norm: float | None = 10.0,
        adam_eps: float = 1e-8, compile: bool = False,
        encoder: Encoder | None = None,
    ) -> None:
        """
        Args:
            lr, adam_eps: Adam step size and ε.
            lr_schedule: ``constant``, or ``linear`` to 0 over ``budget.frames`` (as SB3's schedules).
            gamma: discount.
            hidden, activation: Q-network MLP (default [64, 64], ReLU), one output per action (Rossi Fig. 2.1).
            target: ``max`` (DQN), ``double_dqn`` (online net selects, target net evaluates) or ``double_q``
                (the seed's Alg. 2.5/2.6: two Q networks updated in turn, each selecting for the other).
            loss: ``huber`` (δ = 1) or ``mse`` (the seed's squared error).
            target_update: ``hard`` copy every ``target_update_every`` updates, ``polyak`` with weight ``tau`` on
                the online network after every update (seed: ς = 1 − τ = 0.99), or ``none``.
            eps_start, eps_end, eps_decay_frames, eps_schedule: ε-greedy exploration as a function of frames.
            max_grad_norm: global gradient-norm clip (None = off).
            compile: ``torch.compile`` the loss computation.
            encoder: the CNN in front of the MLP on image observations, ``nature`` (default) or ``impala``
                (docs/atari.md); only for image observations.
        """
        super().__init__(spec)
        self.save_hyperparameters(ignore=["spec"])
        self.automatic_optimization = False  # a collection step's updates in one training_step
        self.gamma = gamma
        n = spec.action_dim
        hidden = hidden if hidden is not None else [64, 64]
        self.q = body(spec, hidden, activation, encoder, n)[0]
        self.q2 = body(spec, hidden, activation, encoder, n)[0] if target == "double_q" else None
        self.q_target = make_target(self.q) if target_update != "none" else None
        self.q2_target = make_target(self.q2) if self.q2 is not None and target_update != "none" else None
        # Double Q-learning updates one of two networks per step: the other one gets no gradient.
        self.ddp_find_unused_parameters = target == "double_q"
        self._loss = self.maybe_compile(self._compute_loss, compile)

    # --- acting ------------------------------------------------------------------------------------------------
    def q_values(self, obs: torch.Tensor) -> torch.Tensor:
        """The greedy policy's action values: Q, or Q1 + Q2 for Double Q-learning (van Hasselt 2010)."""
        q = self.q(obs).float()
        return q + self.q2(obs).float() if self.q2 is not None else q

    def epsilon(self) -> float:
        hp = self.hp
        return epsilon(self.clock, hp.eps_start, hp.eps_end, hp.eps_decay_frames, hp.eps_schedule)

    def collection_policy(self) -> EpsilonGreedy:
        return EpsilonGreedy(self.q_values, self.epsilon, self.spec.action_dim)

    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        return self.collection_policy().act(obs, deterministic)

    # --- update ------------------------------------------------------------------------------------------------
    def _networks(self, which: int) -> tuple[nn.Module, nn.Module, nn.Module]:
        """(online net being updated, net selecting a', net evaluating a') for this update."""
        online = self.q if which == 0 or self.q2 is None else self.q2
        target = self.q_target if self.q_target is not None else self.q
        if self.q2 is None:
            select = self.q if self.hp.target == "double_dqn" else target
            return online, select, target
        target2 = self.q2_target if self.q2_target is not None else self.q2
        return (online, target, target2) if which == 0 else (online, target2, target)

    def _compute_loss(self, obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor, next_obs: torch.Tensor,
                      terminated: torch.Tensor, which: int) -> dict[str, torch.Tensor]:
        online, select, evaluate = self._networks(which)
        with torch.no_grad():
            q_eval = evaluate(next_obs).float()
            q_select = q_eval if select is evaluate else select(next_obs).float()  # plain DQN: one forward pass
            y = q_target(reward, terminated, q_select, q_eval, self.hp.gamma)
        q_taken = online(obs).float().gather(-1, action.long().unsqueeze(-1)).squeeze(-1)
        return {"loss": td_loss(q_taken, y, self.hp.loss), "q": q_taken.detach().mean(), "y": y.mean()}

    def training_step(self, dataloader_iter: Iterator[Any]) -> None:  # type: ignore[override]
        """A collection step's updates, one optimiser step per minibatch, each followed by the target update.

        One ``training_step`` per collection step instead of one per update: ``dqn/cartpole`` takes 128 updates
        per 256 frames, and Lightning's per-step loop was most of what lrl added to them (benchmarks/README.md).
        The arithmetic and its order are those of one update per ``training_step``.
        """
        hp, source, opt = self.hp, data_source(self.trainer), self.optimizers()
        while True:
            batch = self.next_batch(dataloader_iter)
            if batch.first:
                lr = self.scheduled_lr(batch.progress_remaining)
                self.record(**{"stats/epsilon": self.epsilon(), "stats/lr": lr})
            td = batch.td
            which = self.trainer.global_step % 2 if self.q2 is not None else 0  # Alg. 2.5: roles swap in turn
            out = self._loss(td["observation"], td["action"], td["next", "reward"].squeeze(-1),
                             td["next", "observation"], td["next", "terminated"].squeeze(-1), which)
            self.record(**{"loss/td": out["loss"], "stats/q_mean": out["q"], "stats/target_mean": out["y"]})
            self.manual_step(opt, out["loss"], hp.max_grad_norm)
            self._update_targets(self.trainer.global_step)  # global_step counts the optimiser steps taken
            if source.at_boundary:
                return

    def _update_targets(self, updates: int) -> None:
        """Polyak after every update, or a hard copy every ``target_update_every`` updates (``updates`` so far)."""
        hp = self.hp
        for target, online in ((self.q_target, self.q), (self.q2_target, self.q2)):
            if target is None or online is None:
                continue
            if hp.target_update == "polyak":
                polyak_update_(target, online, hp.tau)
            elif updates % hp.target_update_every == 0:
                hard_update_(target, online)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = [p for p in self.parameters() if p.requires_grad]
        return self.adam(params, self.hp.lr, self.hp.adam_eps)
