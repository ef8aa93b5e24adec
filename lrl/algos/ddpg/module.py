"""Deep Deterministic Policy Gradient (Rossi §9.6, Alg. 9.4; Lillicrap et al. 2016).

The replay DataModule collects with the behaviour policy β(s) = clip(μ_θ(s) + noise, low, high) (Gaussian by
default, "seems to work even better" than the original Ornstein-Uhlenbeck process, §9.6; OU as an option) and
hands out minibatches. Each ``training_step`` is one iteration n of Alg. 9.4:

    y  = r + γ (1 − terminated) Q_ψ'(s', μ_θ'(s'))      no gradient; truncation bootstraps, termination does not
    ψ  ← Adam step on mean (Q_ψ(s, a) − y)²,            then ψ' ← ς ψ' + (1 − ς) ψ
    θ  ← Adam step on −mean Q_ψ(s, μ_θ(s)) (ψ fixed),   then θ' ← ζ θ' + (1 − ζ) θ

Two optimisers, so manual optimisation (under DDP with ``find_unused_parameters``); the target
updates happen inside ``training_step``, so a checkpoint written after the step holds them. The seed also lists
batch normalisation among Lillicrap et al.'s expedients; it is not offered here (see docs/ddpg.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import torch
from torch import nn

from lrl.algos.base import RLModule
from lrl.algos.ddpg.loss import critic_target
from lrl.contract import ROLLOUT_KEYS, Consumes
from lrl.estimators.losses import deterministic_actor_loss, q_regression_loss
from lrl.networks.deterministic import (
    DeterministicActorCritic,
    NoisyDeterministicPolicy,
    act_with,
    make_noise,
    noise_std,
)
from lrl.spec import EnvSpec


class DDPG(RLModule):
    consumes = Consumes(sources=("replay",), keys=ROLLOUT_KEYS, actions=("continuous",))
    ddp_find_unused_parameters = True  # two backward passes per step, each reaching only part of the module

    def __init__(
        self, spec: EnvSpec, *,
        lr: float = 1e-3, actor_lr: float | None = None, gamma: float = 0.99, tau: float = 0.005,
        actor_tau: float | None = None, hidden: list[int] | None = None, critic_hidden: list[int] | None = None,
        activation: str = "relu", exploration: Literal["gaussian", "ou"] = "gaussian",
        exploration_std: float = 0.1, exploration_std_final: float | None = None, exploration_decay_frames: int = 0,
        ou_theta: float = 0.15, ou_dt: float = 1e-2, loss: Literal["mse", "huber"] = "mse",
        max_grad_norm: float | None = None, adam_eps: float = 1e-8, compile: bool = False,
    ) -> None:
        """
        Args:
            lr: Adam step size of the critic ω (and of the actor η unless ``actor_lr``); 1e-3 as SB3 and
                Fujimoto et al. 2018 (Lillicrap et al. used 1e-4 for the actor, 1e-3 for the critic).
            actor_lr: Adam step size of the actor η (None = ``lr``).
            gamma: discount.
            tau: Polyak weight of the online critic, ψ' ← τ ψ + (1 − τ) ψ' (the seed's ς = 1 − τ); 0.005 as SB3.
            actor_tau: the same for the actor target (the seed's ζ = 1 − actor_tau); None = ``tau``.
            hidden, critic_hidden, activation: MLP sizes of the actor (default [400, 300], Fujimoto et al. / SB3)
                and of the critic (None = ``hidden``), activation (ReLU).
            exploration: behaviour-policy noise, ``gaussian`` (default, Rossi §9.6) or ``ou``
                (Ornstein-Uhlenbeck, θ = ``ou_theta``, dt = ``ou_dt``; its state resets at episode ends).
            exploration_std: noise σ as a fraction of the action half-range (0.1 as the RL Zoo).
            exploration_std_final, exploration_decay_frames: optional linear decay of σ over frames.
            loss: critic regression loss, ``mse`` (the seed's squared error) or ``huber``.
            max_grad_norm: gradient-norm clip for each network (None = off, as the papers).
            adam_eps: Adam ε.
            compile: ``torch.compile`` the loss computations.
        """
        super().__init__(spec)
        self.save_hyperparameters(ignore=["spec"])
        self.automatic_optimization = False
        self.ac = DeterministicActorCritic(spec, hidden if hidden is not None else [400, 300], activation,
                                           n_critics=1, critic_hidden=critic_hidden)
        self._noise = make_noise(exploration, ou_theta, ou_dt)
        self._critic_loss = self.maybe_compile(self._compute_critic_loss, compile)
        self._actor_loss = self.maybe_compile(self._compute_actor_loss, compile)

    # --- acting ------------------------------------------------------------------------------------------------
    def exploration_std(self) -> float:
        hp = self.hp
        return noise_std(self.clock, hp.exploration_std, hp.exploration_std_final, hp.exploration_decay_frames)

    def collection_policy(self) -> nn.Module:
        return NoisyDeterministicPolicy(self.ac.actor, self._noise, self.exploration_std)

    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        return act_with(self.ac.actor, obs, deterministic, self.exploration_std)

    # --- update ------------------------------------------------------------------------------------------------
    def _compute_critic_loss(self, obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor,
                             next_obs: torch.Tensor, terminated: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            next_q = self.ac.critic_target(next_obs, self.ac.actor_target(next_obs))[0]
            y = critic_target(reward, terminated, next_q, self.hp.gamma)
        q = self.ac.critic(obs, action)
        return {"loss": q_regression_loss(q, y, self.hp.loss), "q": q.detach().mean(), "y": y.mean()}

    def _compute_actor_loss(self, obs: torch.Tensor) -> torch.Tensor:
        return deterministic_actor_loss(self.ac.q1_frozen(obs, self.ac.actor(obs)))

    def training_step(self, dataloader_iter: Iterator[Any]) -> None:  # type: ignore[override]
        batch = self.next_batch(dataloader_iter)
        hp = self.hp
        if batch.first:
            self.record(**{"stats/exploration_std": self.exploration_std()})
        td = batch.td
        obs = td["observation"]
        opts: Any = self.optimizers()  # Lightning types it as one optimizer or a list
        actor_opt, critic_opt = opts
        out = self._critic_loss(obs, td["action"], td["next", "reward"].squeeze(-1), td["next", "observation"],
                                td["next", "terminated"].squeeze(-1))
        self.manual_step(critic_opt, out["loss"], hp.max_grad_norm)
        pi_loss = self._actor_loss(obs)
        self.manual_step(actor_opt, pi_loss, hp.max_grad_norm)
        self.ac.update_targets_(hp.tau, hp.actor_tau if hp.actor_tau is not None else hp.tau)
        self.record(**{"loss/critic": out["loss"], "loss/actor": pi_loss, "stats/q_mean": out["q"],
                       "stats/target_mean": out["y"]})

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        hp = self.hp
        actor_lr = hp.actor_lr if hp.actor_lr is not None else hp.lr
        return self.adam_pair(self.ac.actor, self.ac.critic, actor_lr, hp.lr, hp.adam_eps)
