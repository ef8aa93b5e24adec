"""Twin Delayed DDPG (Rossi ch. 10, Alg. 10.1; Fujimoto et al. 2018).

DDPG (:mod:`lrl.algos.ddpg`) with the three changes of §10.1, each an argument:

1. twin critics Q_ψ1, Q_ψ2 (``n_critics``); the target takes the minimum of the two *target* critics and both
   critics regress to that same y (§10.2; Alg. 10.1's min(Q_ψ1, Q_ψ2') is a typo);
2. target policy smoothing a' = clip(μ_θ'(s') + clip(N(0, σ̃), −c, c), low, high) (eq. 10.1; the clip to the
   action bounds is the paper's code, not the seed's);
3. delayed policy updates: the actor, and then *all* target networks, are updated after every d-th critic update
   (d = ``policy_delay`` = 2, §10.4; Alg. 10.1's "if n mod d" means n mod d == 0). Updates are counted from 1
   (the first actor step follows the second critic step), as in the paper's code and SB3.

The actor climbs Q_ψ1 only. σ̃ and c are fractions of the action half-range (the paper's 0.2 and 0.5 times
``max_action``). The smoothing noise comes from the module's own generator, saved in the checkpoint with the update
counter, so a resumed run draws the same noise as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import torch
from torch import nn

from lrl.algos.base import RLModule
from lrl.algos.td3.loss import smoothed_target_action, twin_critic_target
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


class TD3(RLModule):
    consumes = Consumes(sources=("replay",), keys=ROLLOUT_KEYS, actions=("continuous",))
    ddp_find_unused_parameters = True  # the actor gets no gradient on delayed steps

    def __init__(
        self, spec: EnvSpec, *,
        lr: float = 1e-3, actor_lr: float | None = None, gamma: float = 0.99, tau: float = 0.005,
        actor_tau: float | None = None, n_critics: int = 2, policy_delay: int = 2,
        target_policy_noise: float = 0.2, target_noise_clip: float = 0.5,
        hidden: list[int] | None = None, critic_hidden: list[int] | None = None, activation: str = "relu",
        exploration: Literal["gaussian", "ou"] = "gaussian", exploration_std: float = 0.1,
        exploration_std_final: float | None = None, exploration_decay_frames: int = 0,
        ou_theta: float = 0.15, ou_dt: float = 1e-2, loss: Literal["mse", "huber"] = "mse",
        max_grad_norm: float | None = None, adam_eps: float = 1e-8, compile: bool = False,
    ) -> None:
        """
        Args:
            lr, actor_lr: Adam step sizes of the critics ω and of the actor η (None = ``lr``); 1e-3 as the paper.
            gamma: discount.
            tau, actor_tau: Polyak weights of the online critics / actor (the seed's ς = 1 − tau and
                ζ = 1 − actor_tau; actor_tau None = tau); 0.005 as the paper.
            n_critics: number of critics whose minimum forms the target (2 = twin; 1 gives DDPG's target).
            policy_delay: d, critic updates per actor and target update (2, Rossi §10.4).
            target_policy_noise, target_noise_clip: σ̃ and c of the target policy smoothing (0.2, 0.5), as
                fractions of the action half-range; σ̃ = 0 turns smoothing off.
            hidden, critic_hidden, activation: MLP sizes of the actor (default [400, 300]) and of each critic
                (None = ``hidden``), activation (ReLU).
            exploration, exploration_std, exploration_std_final, exploration_decay_frames, ou_theta, ou_dt: the
                behaviour-policy noise, as for ``ddpg`` (Gaussian σ = 0.1 of the half-range by default).
            loss: critic regression loss, ``mse`` or ``huber``.
            max_grad_norm: gradient-norm clip for each network (None = off, as the paper).
            adam_eps: Adam ε.
            compile: ``torch.compile`` the loss computations.
        """
        super().__init__(spec)
        self.save_hyperparameters(ignore=["spec"])
        self.automatic_optimization = False
        self.ac = DeterministicActorCritic(spec, hidden if hidden is not None else [400, 300], activation,
                                           n_critics=n_critics, critic_hidden=critic_hidden)
        self._noise = make_noise(exploration, ou_theta, ou_dt)
        self.updates = 0  # critic updates so far (the n of Alg. 10.1); checkpointed
        self._gen: torch.Generator | None = None
        self._gen_state: torch.Tensor | None = None
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
    def generator(self) -> torch.Generator:
        """The target-smoothing noise generator, on the module's device, seeded from the run's seed."""
        if self._gen is None:
            self._gen = torch.Generator(self.device)
            self._gen.manual_seed(torch.initial_seed() + 104729)
            if self._gen_state is not None:
                self._gen.set_state(self._gen_state)
        return self._gen

    def _compute_critic_loss(self, obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor,
                             next_obs: torch.Tensor, terminated: torch.Tensor,
                             eps: torch.Tensor) -> dict[str, torch.Tensor]:
        hp, actor = self.hp, self.ac.actor
        with torch.no_grad():
            scale = actor.action_scale
            next_action = smoothed_target_action(self.ac.actor_target(next_obs), hp.target_policy_noise * scale * eps,
                                                 hp.target_noise_clip * scale, actor.low, actor.high)
            y = twin_critic_target(reward, terminated, self.ac.critic_target(next_obs, next_action), hp.gamma)
        q = self.ac.critic(obs, action)
        return {"loss": q_regression_loss(q, y, hp.loss), "q": q.detach().mean(), "y": y.mean()}

    def _compute_actor_loss(self, obs: torch.Tensor) -> torch.Tensor:
        return deterministic_actor_loss(self.ac.q1_frozen(obs, self.ac.actor(obs)))

    def training_step(self, dataloader_iter: Iterator[Any]) -> None:  # type: ignore[override]
        batch = self.next_batch(dataloader_iter)
        hp = self.hp
        if batch.first:
            self.record(**{"stats/exploration_std": self.exploration_std()})
        td = batch.td
        obs, action = td["observation"], td["action"]
        eps = torch.randn(action.shape, generator=self.generator(), device=action.device, dtype=torch.float32)
        opts: Any = self.optimizers()  # Lightning types it as one optimizer or a list
        actor_opt, critic_opt = opts
        out = self._critic_loss(obs, action, td["next", "reward"].squeeze(-1), td["next", "observation"],
                                td["next", "terminated"].squeeze(-1), eps)
        self.manual_step(critic_opt, out["loss"], hp.max_grad_norm)
        self.updates += 1
        self.record(**{"loss/critic": out["loss"], "stats/q_mean": out["q"], "stats/target_mean": out["y"]})
        if self.updates % hp.policy_delay == 0:  # delayed: actor, then every target network (§10.4)
            pi_loss = self._actor_loss(obs)
            self.manual_step(actor_opt, pi_loss, hp.max_grad_norm)
            self.ac.update_targets_(hp.tau, hp.actor_tau if hp.actor_tau is not None else hp.tau)
            self.record(**{"loss/actor": pi_loss})

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        state = self._gen.get_state() if self._gen is not None else self._gen_state
        checkpoint["td3"] = {"updates": self.updates, "generator": state}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        saved = checkpoint.get("td3", {})
        self.updates = saved.get("updates", 0)
        self._gen_state = saved.get("generator")
        if self._gen is not None and self._gen_state is not None:
            self._gen.set_state(self._gen_state)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        hp = self.hp
        actor_lr = hp.actor_lr if hp.actor_lr is not None else hp.lr
        return self.adam_pair(self.ac.actor, self.ac.critic, actor_lr, hp.lr, hp.adam_eps)
