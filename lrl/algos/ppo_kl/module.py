"""KL-penalty PPO: the surrogate minus a KL penalty whose multiplier adapts per rollout.

Seeds: 002 and 003 "PPO with Adaptive KL Penalty" (β ×2 / ÷2 around the target δ), 000 §3 Algorithm 2
"Primal–dual update" (λ ← λ + α(KL − ε)), 003's TRPO slide (the penalty form). Per rollout (collected by the
DataModule): :meth:`process_rollout` computes V, GAE(γ, λ) advantages, λ-return targets and the old policy's
distribution parameters, without gradients. Then ``epochs`` passes of shuffled minibatches, one Adam step
each (Lightning's automatic optimisation: DDP, precision and clipping come from the Trainer):

    loss = −(E[r·Â] − β·E_s[KL(π_old, π_θ)]) + c_v·E[(V − V_targ)²] − c_e·H

with the analytic KL of the policy head. After the rollout's last step the KL of the update,
D̄ = E_s[KL] between the old policy and π_{θ_{k+1}} over the whole rollout, moves the multiplier:
``adaptive`` (Brunskill/Fragkiadaki), ``dual`` gradient ascent (Atreya) or ``fixed``. The multiplier is a buffer, so it
is checkpointed and identical on every rank (the KL is averaged across ranks first).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import torch
from tensordict import TensorDict
from torch import nn

from lrl.algos.base import RLModule
from lrl.algos.ppo_kl.loss import adaptive_kl_coef, dual_ascent_kl_coef, ppo_kl_loss
from lrl.contract import ROLLOUT_KEYS, Consumes, data_source
from lrl.errors import RecipeError
from lrl.estimators import annotate_gae, normalize_advantage
from lrl.estimators.fisher import all_reduce_mean
from lrl.networks import ActorCritic, SamplingPolicy
from lrl.networks.encoders import Encoder
from lrl.networks.heads import Params
from lrl.spec import EnvSpec


class PPOKL(RLModule):
    consumes = Consumes(sources=("onpolicy",), keys=ROLLOUT_KEYS, observations=("box", "image"))

    kl_coef: torch.Tensor  # the multiplier β (adaptive, fixed) or λ (dual), a buffer

    def __init__(
        self, spec: EnvSpec, *,
        epochs: int = 10, minibatch_size: int | None = 64,
        lr: float = 3e-4, lr_schedule: Literal["constant", "linear"] = "constant",
        gamma: float = 0.99, gae_lambda: float = 0.95,
        kl_coef: float = 1.0, kl_coef_update: Literal["adaptive", "dual", "fixed"] = "adaptive",
        kl_target: float = 0.01, kl_direction: Literal["old_new", "new_old"] | None = None,
        adaptive_tolerance: float = 1.5, adaptive_factor: float = 2.0,
        dual_lr: float = 10.0, project_kl_coef: bool = False,
        vf_coef: float = 0.5, ent_coef: float = 0.0, max_grad_norm: float | None = 0.5,
        normalize_advantage: bool = True, hidden: list[int] | None = None, activation: str = "tanh",
        shared: bool = False, log_std_init: float = 0.0, ortho_init: bool = True, adam_eps: float = 1e-5,
        compile: bool = False,
        encoder: Encoder | None = None,
    ) -> None:
        """
        Args:
            epochs, minibatch_size: the update schedule: ``epochs`` passes over each rollout in shuffled
                minibatches of ``minibatch_size`` samples (global across ranks; None = the whole rollout).
            lr, lr_schedule: Adam step size, constant or linear to 0 over ``budget.frames``.
            gamma, gae_lambda: discount and GAE λ (Rossi ch. 5; "any advantage estimation algorithm").
            kl_coef: initial multiplier β_0 / λ_0 ("initial KL penalty not that important", Brunskill).
            kl_coef_update: ``adaptive`` (β ×factor if KL ≥ tolerance·δ, ÷factor if KL ≤ δ/tolerance; seeds
                002/003), ``dual`` (λ ← λ + α(KL − ε); Atreya Alg. 2) or ``fixed`` (Fragkiadaki's penalty form).
            kl_target: δ (adaptive) or ε (dual), the KL the update aims at.
            kl_direction: ``old_new`` = KL(π_old ‖ π_θ) (Brunskill/Fragkiadaki), ``new_old`` = KL(π_θ ‖ π_old) (Atreya
                eq. 62–63); None = the source's: ``new_old`` for ``dual``, else ``old_new``.
            adaptive_tolerance, adaptive_factor: the 1.5 and 2 of the adaptive rule.
            dual_lr: α, the dual step size (the seeds give none).
            project_kl_coef: keep λ ≥ 0 under ``dual`` [NOT IN SEEDS].
            vf_coef, ent_coef: weights of the value loss and of the entropy bonus [entropy NOT IN SEEDS].
            max_grad_norm: global gradient-norm clip (None = off).
            normalize_advantage: standardise advantages per minibatch (Brunskill's trick).
            hidden, activation, shared: MLP sizes (default [64, 64]), activation, shared actor-critic body.
            log_std_init, ortho_init, adam_eps: Gaussian head's initial log-std, reference initialisation, Adam ε.
            compile: ``torch.compile`` the loss computation.
            encoder: the CNN in front of the MLP on image observations, ``nature`` (default) or ``impala``
                (docs/atari.md); only for image observations.
        """
        super().__init__(spec)
        self.save_hyperparameters(ignore=["spec"])
        if kl_coef_update == "adaptive" and (adaptive_tolerance <= 1.0 or adaptive_factor <= 1.0):
            raise RecipeError("algo.adaptive_tolerance and algo.adaptive_factor must be > 1")
        self.gamma = gamma
        self.kl_direction = kl_direction or ("new_old" if kl_coef_update == "dual" else "old_new")
        self.net = ActorCritic(spec, hidden if hidden is not None else [64, 64], activation, shared,
                               log_std_init, ortho_init, encoder)
        self.register_buffer("kl_coef", torch.tensor(float(kl_coef)))  # β or λ: checkpointed, same on all ranks
        self._loss = self.maybe_compile(self._compute_loss, compile)
        self._rollout: TensorDict | None = None  # the current rollout, for the KL of the whole update

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
        for i, p in enumerate(self.net.policy_params(td["observation"])):  # π_θk, fixed for the whole update
            td.set(("old_dist", str(i)), p.clone())  # a copy: the Gaussian's log-std is a view of θ
        self._rollout = td
        self.record(**{"stats/explained_variance": explained})
        return td

    # --- update ------------------------------------------------------------------------------------------------
    def kl(self, old: Params, new: Params) -> torch.Tensor:
        """Closed-form KL per state in the configured direction."""
        head = self.net.head
        return head.kl(old, new) if self.kl_direction == "old_new" else head.kl(new, old)

    @staticmethod
    def _old(td: TensorDict) -> Params:
        return tuple(td["old_dist", k] for k in sorted(td["old_dist"].keys(), key=int))

    def _compute_loss(self, obs: torch.Tensor, action: torch.Tensor, old_logp: torch.Tensor, old: Params,
                      advantage: torch.Tensor, value_target: torch.Tensor, kl_coef: torch.Tensor
                      ) -> dict[str, torch.Tensor]:
        hp = self.hp
        params = self.net.policy_params(obs)
        if hp.normalize_advantage:
            advantage = normalize_advantage(advantage)
        return ppo_kl_loss(self.net.head.log_prob(params, action), old_logp, advantage, self.kl(old, params),
                           self.net.head.entropy(params), self.net.value(obs), value_target, kl_coef=kl_coef,
                           vf_coef=hp.vf_coef, ent_coef=hp.ent_coef)

    def training_step(self, dataloader_iter: Iterator[Any]) -> torch.Tensor:  # type: ignore[override]
        batch = self.next_batch(dataloader_iter)
        if batch.first:
            self.record(**{"stats/lr": self.scheduled_lr(batch.progress_remaining)})
        td = batch.td
        out = self._loss(td["observation"], td["action"], td["sample_log_prob"], self._old(td), td["advantage"],
                         td["value_target"], self.kl_coef.detach())
        self.record(**{"loss/total": out["loss"], "loss/policy": out["policy"], "loss/kl_penalty": out["kl_penalty"],
                       "loss/value": out["value"], "stats/entropy": out["entropy"], "stats/kl_minibatch": out["kl"]})
        return out["loss"]

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None) -> None:
        """The step, then — after the rollout's last one — the multiplier update, before any callback (and so
        any checkpoint) sees this batch's end."""
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        if self._rollout is not None and data_source(self.trainer).at_boundary:
            self._update_kl_coef(self._rollout)
            self._rollout = None

    @torch.no_grad()
    def _update_kl_coef(self, td: TensorDict) -> None:
        hp = self.hp
        with torch.autocast(self.device.type, enabled=False):
            obs = td["observation"].flatten(0, 1).float()
            old = tuple(p.flatten(0, 1) for p in self._old(td))
            kl = all_reduce_mean(self.kl(old, self.net.policy_params(obs)).mean()).item()  # D̄(θ_{k+1}, θ_k)
        coef = self.kl_coef.item()
        if hp.kl_coef_update == "adaptive":
            coef = adaptive_kl_coef(coef, kl, hp.kl_target, hp.adaptive_tolerance, hp.adaptive_factor)
        elif hp.kl_coef_update == "dual":
            coef = dual_ascent_kl_coef(coef, kl, hp.kl_target, hp.dual_lr, hp.project_kl_coef)
        self.kl_coef.fill_(coef)
        self.record(**{"stats/kl": kl, "stats/kl_coef": coef})

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.adam(self.net.parameters(), self.hp.lr, self.hp.adam_eps)
