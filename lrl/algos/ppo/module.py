"""Proximal Policy Optimisation, clipped surrogate (Schulman et al. 2017; Rossi ch. 8, Brunskill/Fragkiadaki).

Per rollout (collected by the DataModule with :meth:`collection_policy`): :meth:`process_rollout` computes
V(s_t), V(s_{t+1}) and GAE(γ, λ) advantages with λ-return value targets, without gradients. Then ``epochs``
passes of shuffled minibatches, one optimiser step each, all in one ``training_step`` (Lightning's manual
optimisation, so DDP gradient averaging, mixed precision and gradient clipping still come from the Trainer):

    loss = −E[min(r Â, clip(r, 1−ε, 1+ε) Â)] + c_v · E[(V − V_targ)²] − c_e · H[π]

Options: advantage normalisation per minibatch; value clipping; entropy bonus; global grad-norm clipping;
KL early stop (Rossi Alg. 8.1: when KL̂(old‖new) ≥ ``target_kl`` before a step, the rest of the rollout is
skipped — the Alg's "break", not the text's roll-back); learning rate and clip range
constant or decayed linearly to 0 over the frame budget.
Truncated episodes bootstrap from V(final observation); terminated ones do not.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import torch
import torch.distributed as dist
from tensordict import TensorDict
from torch import nn

from lrl.algos.base import RLModule
from lrl.algos.ppo.loss import ppo_loss
from lrl.contract import ROLLOUT_KEYS, Consumes, data_source
from lrl.estimators import annotate_gae, normalize_advantage
from lrl.networks import ActorCritic, SamplingPolicy
from lrl.networks.encoders import Encoder
from lrl.spec import EnvSpec


class PPO(RLModule):
    consumes = Consumes(sources=("onpolicy",), keys=ROLLOUT_KEYS, observations=("box", "image"))

    def __init__(
        self, spec: EnvSpec, *,
        epochs: int = 10, minibatch_size: int | None = 64,
        lr: float = 3e-4, lr_schedule: Literal["constant", "linear"] = "constant",
        gamma: float = 0.99, gae_lambda: float = 0.95,
        clip_range: float = 0.2, clip_schedule: Literal["constant", "linear"] = "constant",
        clip_range_vf: float | None = None, vf_coef: float = 0.5, ent_coef: float = 0.0,
        max_grad_norm: float | None = 0.5, normalize_advantage: bool = True, target_kl: float | None = None,
        hidden: list[int] | None = None, activation: str = "tanh", shared: bool = False,
        log_std_init: float = 0.0, ortho_init: bool = True, adam_eps: float = 1e-5, compile: bool = False,
        encoder: Encoder | None = None,
    ) -> None:
        """
        Args:
            epochs, minibatch_size: the update schedule: ``epochs`` passes over each rollout in shuffled
                minibatches of ``minibatch_size`` samples (global across ranks; None = the whole rollout).
            lr, lr_schedule: Adam step size, constant or linear to 0 over ``budget.frames``.
            gamma, gae_lambda: discount and GAE λ (Rossi ch. 5).
            clip_range, clip_schedule: ε of the clipped surrogate ("maybe ε = 0.2", Brunskill/Fragkiadaki).
            clip_range_vf: clip the value update around the old value (None = off).
            vf_coef, ent_coef: weights of the value loss and of the entropy bonus.
            max_grad_norm: global gradient-norm clip (None = off).
            normalize_advantage: standardise advantages per minibatch.
            target_kl: KL early-stop threshold ζ (Rossi Alg. 8.1); None = off.
            hidden, activation, shared: MLP sizes (default [64, 64]), activation, shared actor-critic body.
            log_std_init: initial log-std of the Gaussian head (continuous actions).
            ortho_init: orthogonal initialisation as in the reference implementation.
            adam_eps: Adam ε (1e-5 as in the reference implementation).
            encoder: the CNN in front of the MLP on image observations, ``nature`` (default) or ``impala``
                (docs/atari.md); only for image observations.
            compile: ``torch.compile`` the loss computation.
        """
        super().__init__(spec)
        self.save_hyperparameters(ignore=["spec"])
        self.automatic_optimization = False  # several optimiser steps per training_step
        self.gamma = gamma
        self.net = ActorCritic(spec, hidden if hidden is not None else [64, 64], activation, shared,
                               log_std_init, ortho_init, encoder)
        self._loss = self.maybe_compile(self._compute_loss, compile)
        self._clip = clip_range

    # --- acting ------------------------------------------------------------------------------------------------
    def collection_policy(self) -> nn.Module:
        return SamplingPolicy(self.net)

    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        return self.net.act(obs, deterministic)

    def policy_network(self) -> ActorCritic:
        return self.net  # algo.init_from starts it from another run's policy

    @torch.no_grad()
    def process_rollout(self, td: TensorDict) -> TensorDict:
        explained = annotate_gae(td, self.net.value, self.hp.gamma, self.hp.gae_lambda)
        self.record(**{"stats/explained_variance": explained})
        return td

    # --- update ------------------------------------------------------------------------------------------------
    def _compute_loss(self, obs: torch.Tensor, action: torch.Tensor, old_logp: torch.Tensor,
                      advantage: torch.Tensor, value_target: torch.Tensor, old_value: torch.Tensor,
                      clip_range: float) -> dict[str, torch.Tensor]:
        hp = self.hp
        params = self.net.policy_params(obs)
        logp = self.net.head.log_prob(params, action)
        if hp.normalize_advantage:
            advantage = normalize_advantage(advantage)
        return ppo_loss(logp, old_logp, advantage, self.net.head.entropy(params), self.net.value(obs),
                        value_target, old_value, clip_range=clip_range, clip_range_vf=hp.clip_range_vf,
                        vf_coef=hp.vf_coef, ent_coef=hp.ent_coef)

    def training_step(self, dataloader_iter: Iterator[Any]) -> None:  # type: ignore[override]
        """A rollout's whole update phase: every minibatch of its ``epochs`` passes, one optimiser step each.

        One ``training_step`` per rollout instead of one per minibatch: Lightning's per-step loop (hooks,
        closure, callbacks) was the largest cost lrl added to a ``ppo/cartpole`` run (benchmarks/README.md).
        Manual optimisation keeps what the Trainer gives: ``manual_backward`` (precision, DDP gradient
        averaging) and ``clip_gradients``; the arithmetic and its order are the same as one step per call.
        """
        hp, source, opt = self.hp, data_source(self.trainer), self.optimizers()
        clip: torch.Tensor | float | None = None
        while True:
            batch = self.next_batch(dataloader_iter)
            if batch.first:
                lr = self.scheduled_lr(batch.progress_remaining)
                decay = batch.progress_remaining
                self._clip = hp.clip_range * decay if hp.clip_schedule == "linear" else hp.clip_range
                self.record(**{"stats/lr": lr, "stats/clip_range": self._clip})
            if batch.first or clip is None:  # once per rollout; compiled: ε as a tensor, so its linear decay
                clip = torch.tensor(self._clip) if hp.compile else self._clip  # does not recompile the loss
            td = batch.td
            out = self._loss(td["observation"], td["action"], td["sample_log_prob"], td["advantage"],
                             td["value_target"], td["value"], clip)
            if hp.target_kl is not None:
                kl = out["approx_kl"].clone()
                if dist.is_available() and dist.is_initialized():  # every rank must take the same decision
                    dist.all_reduce(kl)
                    kl /= dist.get_world_size()
                if kl.item() >= hp.target_kl:
                    source.end_rollout()
                    self.record(**{"stats/early_stop": 1.0})
                    return
            self.record(**{"loss/total": out["loss"], "loss/policy": out["policy"], "loss/value": out["value"],
                           "stats/entropy": out["entropy"], "stats/approx_kl": out["approx_kl"],
                           "stats/clip_fraction": out["clip_fraction"]})
            self.manual_step(opt, out["loss"], hp.max_grad_norm)
            if source.at_boundary:
                return

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.adam(self.parameters(), self.hp.lr, self.hp.adam_eps)
