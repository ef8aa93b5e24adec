"""Synchronous Advantage Actor-Critic, A2C (Rossi §3.4–3.6, Alg. 3.3, eq. 3.31–3.33; Fragkiadaki "Actor-critic";
Brunskill; Mnih et al. 2016 for the synchronous, many-env form).

Per rollout of ``num_envs × T`` frames (collected by the DataModule with :meth:`collection_policy`, the envs
stepped in lock-step, i.e. the synchronous variant of Fragkiadaki's "parallel actor-critic"), :meth:`process_rollout`
computes, without gradients, V_ψ(s_t), V_ψ(s_{t+1}) and

    Â_t = GAE(γ, λ)_t = Σ_l (γλ)^l δ_{t+l},   δ_t = r_t + γ(1 − terminated_t) V_ψ(s_{t+1}) − V_ψ(s_t)

which spans the seed's advantage estimators: λ = 0 is the TD error of eq. 3.33 (Fragkiadaki step 3); λ = 1 is the
bootstrapped return of eq. 3.28/3.32 minus V_ψ(s_t), with k running to the end of the rollout (the n-step return
of Mnih et al. 2016, and Alg. 3.3's Monte-Carlo advantage G(τ_t) − V_ψk(s_t) wherever the episode ends inside
the rollout; see docs/a2c.md for why a pure Monte-Carlo mode is not offered with fixed-length rollouts). The critic
target (eq. 3.31) is y_t = GAE(γ, λ_c)_t + V_ψ(s_t): λ_c = 0 is the bootstrapped target r + γV_ψ(s'), λ_c = 1 the
(bootstrapped) Monte-Carlo return. Then exactly one gradient step on the whole rollout (Lightning's automatic
optimisation, so DDP gradient averaging, mixed precision and clipping come from the Trainer):

    loss = −mean(log π_θ(a_t|s_t) Â_t) + c_v · mean((V_ψ(s_t) − y_t)²) − c_e · mean(H[π_θ(·|s_t)])

The seeds give the actor and the critic separate step sizes η and ω (Alg. 3.3): ``critic_lr``. The entropy bonus
and ``vf_coef`` are [NOT IN SEEDS]. Truncated episodes bootstrap from V(final observation); terminated ones do not.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import torch
from tensordict import TensorDict
from torch import nn

from lrl.algos.a2c.loss import a2c_loss
from lrl.algos.base import RLModule
from lrl.contract import ROLLOUT_KEYS, Consumes
from lrl.estimators import explained_variance, gae, normalize_advantage
from lrl.networks import ActorCritic, SamplingPolicy
from lrl.networks.encoders import Encoder
from lrl.spec import EnvSpec


class A2C(RLModule):
    consumes = Consumes(sources=("onpolicy",), keys=ROLLOUT_KEYS, whole_rollout=True, single_pass=True,
                        observations=("box", "image"))

    def __init__(
        self, spec: EnvSpec, *,
        lr: float = 7e-4, lr_schedule: Literal["constant", "linear"] = "constant", critic_lr: float | None = None,
        gamma: float = 0.99, gae_lambda: float = 1.0, critic_lambda: float | None = None,
        vf_coef: float = 0.5, ent_coef: float = 0.0, max_grad_norm: float | None = 0.5,
        normalize_advantage: bool = False, optimizer: Literal["rmsprop", "adam"] = "rmsprop",
        rms_alpha: float = 0.99, optim_eps: float = 1e-5,
        hidden: list[int] | None = None, activation: str = "tanh", shared: bool = False,
        log_std_init: float = 0.0, ortho_init: bool = True, compile: bool = False,
        encoder: Encoder | None = None,
    ) -> None:
        """
        Args:
            lr, lr_schedule: actor step size η (Rossi Alg. 3.3), constant or linear to 0 over ``budget.frames``;
                7e-4 as in Stable-Baselines3 and OpenAI Baselines.
            critic_lr: critic step size ω (Alg. 3.3); None = ``lr``. Applies to the critic body and value output;
                with ``shared`` bodies the shared layers take ``lr``. Follows ``lr_schedule`` too.
            gamma, gae_lambda: discount and the advantage's λ: 0 = TD error (eq. 3.33), 1 = bootstrapped return
                minus V (eq. 3.32 with k to the rollout end; SB3's A2C default).
            critic_lambda: λ of the critic target y = GAE(γ, λ_c) + V: 0 = r + γV(s') (eq. 3.31, bootstrapping),
                1 = (bootstrapped) Monte-Carlo return (eq. 3.31 / Alg. 3.3). None = ``gae_lambda``.
            vf_coef, ent_coef: weights of the critic loss and of the entropy bonus [NOT IN SEEDS].
            max_grad_norm: global gradient-norm clip (None = off).
            normalize_advantage: standardise advantages over the rollout (off in SB3's A2C and in the paper).
            optimizer, rms_alpha, optim_eps: RMSprop (A2C paper / SB3 default: α 0.99, ε 1e-5) or Adam (ε).
            hidden, activation, shared: MLP sizes (default [64, 64]), activation, one shared actor-critic body or
                two separate ones (Fragkiadaki: "two network design" vs "shared network design").
            log_std_init: initial log-std of the Gaussian head (continuous actions).
            ortho_init: orthogonal initialisation as in the reference implementation (and SB3).
            compile: ``torch.compile`` the loss computation.
            encoder: the CNN in front of the MLP on image observations, ``nature`` (default) or ``impala``
                (docs/atari.md); only for image observations.
        """
        super().__init__(spec)
        self.save_hyperparameters(ignore=["spec"])
        self.automatic_optimization = True
        self.gamma = gamma
        self.net = ActorCritic(spec, hidden if hidden is not None else [64, 64], activation, shared,
                               log_std_init, ortho_init, encoder)
        self._loss = self.maybe_compile(self._compute_loss, compile)

    # --- acting ------------------------------------------------------------------------------------------------
    def collection_policy(self) -> nn.Module:
        return SamplingPolicy(self.net)

    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        return self.net.act(obs, deterministic)

    def policy_network(self) -> ActorCritic:
        return self.net  # algo.init_from starts it from another run's policy

    @torch.no_grad()
    def process_rollout(self, td: TensorDict) -> TensorDict:
        hp = self.hp
        value = self.net.value(td["observation"])
        next_value = self.net.value(td["next", "observation"])
        reward, terminated, done = (td["next", k].squeeze(-1) for k in ("reward", "terminated", "done"))
        adv = gae(reward, value, next_value, terminated, done, hp.gamma, hp.gae_lambda)
        lam_c = hp.gae_lambda if hp.critic_lambda is None else hp.critic_lambda
        critic_adv = adv if lam_c == hp.gae_lambda else gae(reward, value, next_value, terminated, done,
                                                             hp.gamma, lam_c)
        target = critic_adv + value
        td.set("advantage", adv)
        td.set("value_target", target)
        self.record(**{"stats/explained_variance": explained_variance(value, target),
                       "stats/value_mean": value.mean(), "stats/advantage_std": adv.std()})
        return td

    # --- update ------------------------------------------------------------------------------------------------
    def _compute_loss(self, obs: torch.Tensor, action: torch.Tensor, advantage: torch.Tensor,
                      value_target: torch.Tensor) -> dict[str, torch.Tensor]:
        hp = self.hp
        params = self.net.policy_params(obs)
        if hp.normalize_advantage:
            advantage = normalize_advantage(advantage)
        return a2c_loss(self.net.head.log_prob(params, action), advantage, self.net.head.entropy(params),
                        self.net.value(obs), value_target, vf_coef=hp.vf_coef, ent_coef=hp.ent_coef)

    def training_step(self, dataloader_iter: Iterator[Any]) -> torch.Tensor:  # type: ignore[override]
        batch = self.next_batch(dataloader_iter)  # the whole rollout: one update per rollout
        hp = self.hp
        if hp.lr_schedule == "linear":
            self._set_lr(batch.progress_remaining)
        td = batch.td
        out = self._loss(td["observation"], td["action"], td["advantage"], td["value_target"])
        self.record(**{"loss/total": out["loss"], "loss/policy": out["policy"], "loss/value": out["value"],
                       "stats/entropy": out["entropy"]})
        return out["loss"]

    def _set_lr(self, scale: float) -> None:
        opt = self.optimizers().optimizer  # type: ignore[union-attr]
        for group, base in zip(opt.param_groups, self._base_lrs(), strict=True):
            group["lr"] = base * scale
        self.record(**{"stats/lr": self.hp.lr * scale})

    # --- optimiser: actor (η) and critic (ω) parameter groups ---------------------------------------------------
    def _param_groups(self) -> list[list[nn.Parameter]]:
        net = self.net
        critic = list(net.value_out.parameters())
        if not self.hp.shared:
            critic = list(net.critic_body.parameters()) + critic
        ids = {id(p) for p in critic}
        return [[p for p in net.parameters() if id(p) not in ids], critic]

    def _base_lrs(self) -> tuple[float, float]:
        hp = self.hp
        return hp.lr, hp.lr if hp.critic_lr is None else hp.critic_lr

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hp
        groups = [{"params": ps, "lr": lr} for ps, lr in zip(self._param_groups(), self._base_lrs(), strict=True)]
        if hp.optimizer == "rmsprop":
            return torch.optim.RMSprop(groups, lr=hp.lr, alpha=hp.rms_alpha, eps=hp.optim_eps)
        return self.adam(groups, hp.lr, hp.optim_eps)
