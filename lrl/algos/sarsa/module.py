"""Deep SARSA and Deep Expected SARSA with policy improvement (Rossi §2.10, Alg. "2.5 Deep Sarsa" and
"2.6 Deep Expected Sarsa", eq. 2.9-2.12).

SARSA is on-policy: it learns Q^π of the policy π that acts, here ε-greedy over Q itself (the seed's policy
improvement "a = argmax_a Q(s, a)" plus exploration), so its data must come from that policy. It is therefore
built on the on-policy DataModule: each rollout [num_envs, T] is collected by :meth:`collection_policy` with the
current weights, then used for ``epochs`` passes of minibatches and thrown away (no replay of old experience).

:meth:`process_rollout` fixes the next action a' of every transition before any update. Inside an episode it is
the action the same env took one step later, a'_t = a_{t+1}, which the collecting π drew at s_{t+1} = s'_t.
Where that action does not exist or belongs to another state (an episode end, where the env reset, and the
last step of the rollout, whose next action is taken only after the update) a' is drawn from the same ε-greedy
π, with the collector's generator, at the true next observation (the final observation at an episode end).
Expected SARSA (``expected=True``) replaces the sample by the expectation under that π (eq. 2.12).

Each ``training_step`` is one semi-gradient step on the Huber (or squared) TD error, y from a target network
(hard copy / Polyak / none, as DQN). A truncated transition bootstraps; a terminated one does not.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import torch
from tensordict import TensorDict

from lrl.algos.base import RLModule
from lrl.algos.sarsa.loss import (
    epsilon_greedy_probs,
    expected_sarsa_target,
    next_actions,
    rollout_cuts,
    sarsa_target,
)
from lrl.contract import ROLLOUT_KEYS, Consumes, data_source
from lrl.estimators.losses import td_loss
from lrl.networks import body
from lrl.networks.encoders import Encoder
from lrl.networks.q import EpsilonGreedy, epsilon
from lrl.networks.target import hard_update_, make_target, polyak_update_
from lrl.spec import EnvSpec


class SARSA(RLModule):
    consumes = Consumes(sources=("onpolicy",), keys=ROLLOUT_KEYS, actions=("discrete",), observations=("box", "image"))

    def __init__(
        self, spec: EnvSpec, *,
        epochs: int = 1, minibatch_size: int | None = None,
        lr: float = 1e-4, lr_schedule: Literal["constant", "linear"] = "constant", gamma: float = 0.99,
        hidden: list[int] | None = None, activation: str = "relu",
        expected: bool = False, loss: Literal["huber", "mse"] = "huber",
        target_update: Literal["hard", "polyak", "none"] = "hard", target_update_every: int = 1_000,
        tau: float = 0.01, eps_start: float = 1.0, eps_end: float = 0.05, eps_decay_frames: int = 10_000,
        eps_schedule: Literal["linear", "exponential"] = "linear", max_grad_norm: float | None = 10.0,
        adam_eps: float = 1e-8, compile: bool = False,
        encoder: Encoder | None = None,
    ) -> None:
        """
        Args:
            epochs, minibatch_size: the update schedule: ``epochs`` passes over each rollout in shuffled
                minibatches of ``minibatch_size`` samples (global across ranks; None = the whole rollout).
            lr, adam_eps: Adam step size and ε (the seed: "a gradient step, or other methods like Adam").
            lr_schedule: ``constant``, or ``linear`` to 0 over ``budget.frames`` (as SB3's schedules).
            gamma: discount.
            hidden, activation: Q-network MLP (default [64, 64], ReLU), one output per action (Rossi Fig. 2.1).
            expected: Expected SARSA (eq. 2.12: Σ_a π(a|s') Q(s', a)) instead of SARSA's sampled a' (eq. 2.9).
            loss: ``huber`` (δ = 1) or ``mse`` (the seed's squared error, eq. 2.11).
            target_update: ``hard`` copy every ``target_update_every`` updates, ``polyak`` with weight ``tau`` on
                the online network after every update (seed: ς = 1 − τ = 0.99), or ``none`` (the seed's simple
                version: the online network, detached, evaluates Q(s', ·)).
            eps_start, eps_end, eps_decay_frames, eps_schedule: ε of the ε-greedy π, a function of frames,
                constant within a rollout (the ε that collected it is the ε of its targets).
            max_grad_norm: global gradient-norm clip (None = off).
            compile: ``torch.compile`` the loss computation.
            encoder: the CNN in front of the MLP on image observations, ``nature`` (default) or ``impala``
                (docs/atari.md); only for image observations.
        """
        super().__init__(spec)
        self.save_hyperparameters(ignore=["spec"])
        self.gamma = gamma
        self.q, _ = body(spec, hidden if hidden is not None else [64, 64], activation, encoder, spec.action_dim)
        self.q_target = make_target(self.q) if target_update != "none" else None
        self._loss = self.maybe_compile(self._compute_loss, compile)

    # --- acting ------------------------------------------------------------------------------------------------
    def q_values(self, obs: torch.Tensor) -> torch.Tensor:
        return self.q(obs).float()

    def epsilon(self) -> float:
        hp = self.hp
        return epsilon(self.clock, hp.eps_start, hp.eps_end, hp.eps_decay_frames, hp.eps_schedule)

    def collection_policy(self) -> EpsilonGreedy:
        """π: ε-greedy over the online Q (the DataModule sets ``self.clock`` before each rollout)."""
        return EpsilonGreedy(self.q_values, self.epsilon, self.spec.action_dim)

    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        return self.collection_policy().act(obs, deterministic)

    # --- the next action a' ----------------------------------------------------------------------------------
    @torch.no_grad()
    def process_rollout(self, td: TensorDict) -> TensorDict:
        # a' at a cut is the draw the collector would have made next: same policy, same generator
        generator = data_source(self.trainer).acting_generator()
        assert generator is not None, "sarsa acts through a collector"
        return self.annotate(td, generator)

    @torch.no_grad()
    def annotate(self, td: TensorDict, generator: torch.Generator) -> TensorDict:
        """Add what the targets need to a rollout [N, T] collected by the current π, before any update:
        ``next_probs`` = π(·|s') for Expected SARSA, else ``next_action`` = a' (see the module docstring)."""
        next_obs, eps = td["next", "observation"], self.epsilon()
        self.record(**{"stats/epsilon": eps})
        if self.hp.expected:
            td.set("next_probs", epsilon_greedy_probs(self.q_values(next_obs), eps))
            return td
        cut = rollout_cuts(td["next", "done"].squeeze(-1))
        sampled = self.collection_policy()(next_obs[cut], generator)["action"]
        td.set("next_action", next_actions(td["action"], cut, sampled))
        return td

    # --- update ------------------------------------------------------------------------------------------------
    def _compute_loss(self, obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor, next_obs: torch.Tensor,
                      terminated: torch.Tensor, next_policy: torch.Tensor) -> dict[str, torch.Tensor]:
        """TD loss; ``next_policy`` is a' [B] (SARSA) or π(·|s') [B, |A|] (Expected SARSA)."""
        hp = self.hp
        evaluate = self.q_target if self.q_target is not None else self.q
        with torch.no_grad():
            next_q = evaluate(next_obs).float()
            if hp.expected:
                y = expected_sarsa_target(reward, terminated, next_q, next_policy, hp.gamma)
            else:
                y = sarsa_target(reward, terminated, next_q, next_policy, hp.gamma)
        q_taken = self.q(obs).float().gather(-1, action.long().unsqueeze(-1)).squeeze(-1)
        return {"loss": td_loss(q_taken, y, hp.loss), "q": q_taken.detach().mean(), "y": y.mean()}

    def training_step(self, dataloader_iter: Iterator[Any]) -> torch.Tensor:  # type: ignore[override]
        batch = self.next_batch(dataloader_iter)
        if batch.first:
            lr = self.scheduled_lr(batch.progress_remaining)
            self.record(**{"stats/lr": lr})
        td = batch.td
        next_policy = td["next_probs"] if self.hp.expected else td["next_action"]
        out = self._loss(td["observation"], td["action"], td["next", "reward"].squeeze(-1),
                         td["next", "observation"], td["next", "terminated"].squeeze(-1), next_policy)
        self.record(**{"loss/td": out["loss"], "stats/q_mean": out["q"], "stats/target_mean": out["y"]})
        return out["loss"]

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """The optimiser step, then the target network's update (here, not in ``on_train_batch_end``, which
        Lightning runs after the checkpoint callback: see docs/sarsa.md)."""
        super().optimizer_step(*args, **kwargs)
        hp = self.hp
        if self.q_target is None:
            return
        if hp.target_update == "polyak":
            polyak_update_(self.q_target, self.q, hp.tau)
        elif (self.trainer.global_step + 1) % hp.target_update_every == 0:  # counted after this step
            hard_update_(self.q_target, self.q)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = [p for p in self.parameters() if p.requires_grad]
        return self.adam(params, self.hp.lr, self.hp.adam_eps)
