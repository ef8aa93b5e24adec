"""Soft Actor-Critic (Rossi ch. 11, Alg. 11.1, eq. 11.1-11.8; Haarnoja et al. 2018A/B), the second version:
twin soft Q critics with Polyak-averaged targets, no value network, no target policy, no delayed updates.

The replay DataModule collects with :meth:`collection_policy` (the stochastic policy itself is the behaviour
policy: Alg. 11.1's "μ + Gaussian", c, σ, d are TD3 leftovers) and hands out minibatches. Each
``training_step`` is one Alg. 11.1 iteration:

1. ã ~ π(·|s) (reparameterised) and a fresh a' ~ π(·|s') from the *current* policy (eq. 11.6, 11.8);
2. y = r + γ(1 − terminated)(min(Q'_1, Q'_2)(s', a') − α log π(a'|s')) from the target critics (eq. 11.5);
3. critic loss ½ Σ_i mean(Q_i(s, a) − y)², actor loss mean(α log π(ã|s) − min(Q_1, Q_2)(s, ã)) with the critics
   detached, and (``autotune_alpha``) the temperature loss on log α;
4. one backward pass of the sum and one Adam step (Lightning's automatic optimisation). The three losses have
   disjoint parameters, so this is exactly the Alg's critic step and actor step from the same state: the actor's
   Q̃min is computed before the critic step, as in Alg. 11.1. (SB3 steps the critics first and re-evaluates them
   for the actor; TorchRL's examples sum the losses like here.) DDP gradient averaging and bf16 come for free;
5. Polyak update of both target critics (``optimizer_step``, so a checkpoint written after the step has it).

Both critics are one batched network (:class:`~lrl.networks.EnsembleMLP`). α is exp(log α) read *before* this
step's update, in all three losses (as SB3). Log-probabilities are those of the squashed action in (−1, 1)^|A|,
before the affine map to the bounds: SB3's and the SAC paper's convention (their envs have bounds ±1), so the
target entropy −|A| means the same on every env. (TorchRL's ``TanhNormal`` and CleanRL include the map's
constant log-Jacobian −Σ log s, which moves every log π by the same amount, e.g. −log 2 on Pendulum.)
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from lrl.algos.base import RLModule
from lrl.algos.sac.loss import actor_loss, alpha_loss, critic_loss, soft_q_target
from lrl.contract import ROLLOUT_KEYS, Consumes
from lrl.errors import RecipeError
from lrl.networks import EnsembleMLP, StochasticPolicy, TanhGaussianHead, mlp
from lrl.networks.target import make_target, polyak_update_
from lrl.spec import EnvSpec


class Actor(StochasticPolicy):
    """MLP body (activation after every hidden layer) and a tanh-Gaussian head scaled to the action bounds."""

    head: TanhGaussianHead

    def __init__(self, spec: EnvSpec, hidden: list[int], activation: str, log_std_min: float,
                 log_std_max: float) -> None:
        super().__init__()
        self.body = mlp(spec.input_dim, hidden, None, activation)
        self.head = TanhGaussianHead(hidden[-1] if hidden else spec.input_dim, spec.action_dim, spec.action_low,
                                     spec.action_high, log_std_min, log_std_max)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.head(self.body(obs))


class _Explore(nn.Module):
    def __init__(self, actor: Actor) -> None:
        super().__init__()
        self.actor = actor

    def forward(self, obs: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {"action": self.actor.head.sample(self.actor(obs), generator)}  # within the bounds: stored as applied


class SAC(RLModule):
    consumes = Consumes(sources=("replay",), keys=ROLLOUT_KEYS, actions=("continuous",))

    def __init__(
        self, spec: EnvSpec, *,
        lr: float = 3e-4, actor_lr: float | None = None, critic_lr: float | None = None,
        alpha_lr: float | None = None, gamma: float = 0.99, tau: float = 0.005, target_update_every: int = 1,
        alpha: float = 1.0, autotune_alpha: bool = True, target_entropy: float | None = None,
        n_critics: int = 2, hidden: list[int] | None = None, critic_hidden: list[int] | None = None,
        activation: str = "relu", log_std_min: float = -20.0, log_std_max: float = 2.0, adam_eps: float = 1e-8,
        compile: bool = False,
    ) -> None:
        """
        Args:
            lr: Adam step size of the actor, the critics and log α (SB3: 3e-4 for all three); ``actor_lr``,
                ``critic_lr``, ``alpha_lr`` override it per part (Alg. 11.1's η and ω).
            gamma: discount.
            tau: Polyak weight of the online critics, ψ' ← τψ + (1 − τ)ψ' (the seed's ς = 1 − τ); SB3: 0.005.
            target_update_every: Polyak update after every this many gradient steps (SB3's target_update_interval).
            alpha: the temperature u of eq. 11.2 (Alg. 11.1: fixed), or its initial value when learned.
            autotune_alpha: learn α towards ``target_entropy`` (Haarnoja et al. 2018B; the loss form is NOT IN SEEDS).
            target_entropy: H̄ of the squashed action; None = −|A| (SB3's and the paper's "auto").
            n_critics: number of Q networks (2: the twin critics of Alg. 11.1); the min is over all of them.
            hidden, critic_hidden, activation: actor MLP (default [256, 256]) and critic MLP (default: ``hidden``).
            log_std_min, log_std_max: clamp of the policy's log σ (SB3: [−20, 2]).
            adam_eps: Adam ε.
            compile: ``torch.compile`` the loss computation.
        """
        super().__init__(spec)
        self.save_hyperparameters(ignore=["spec"])
        hidden = hidden if hidden is not None else [256, 256]
        critic_hidden = critic_hidden if critic_hidden is not None else hidden
        if n_critics < 1 or alpha <= 0 or not 0.0 <= tau <= 1.0 or target_update_every < 1:
            raise RecipeError("sac: need algo.n_critics >= 1, algo.alpha > 0, 0 <= algo.tau <= 1 and "
                              "algo.target_update_every >= 1")
        self.actor = Actor(spec, hidden, activation, log_std_min, log_std_max)
        self.critic = EnsembleMLP(n_critics, spec.input_dim + spec.action_dim, critic_hidden, 1, activation)
        self.critic_target = make_target(self.critic)
        log_alpha = torch.tensor(math.log(alpha))
        if autotune_alpha:
            self.log_alpha = nn.Parameter(log_alpha)
        else:
            self.register_buffer("log_alpha", log_alpha)
        self.target_entropy = float(target_entropy if target_entropy is not None else -spec.action_dim)
        self._loss = self.maybe_compile(self._compute_loss, compile)

    # --- acting ------------------------------------------------------------------------------------------------
    def collection_policy(self) -> nn.Module:
        return _Explore(self.actor)

    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        return self.actor.act(obs, deterministic)

    # --- update ------------------------------------------------------------------------------------------------
    def q_values(self, obs: torch.Tensor, action: torch.Tensor, target: bool = False,
                 frozen: bool = False) -> torch.Tensor:
        """Q_i(s, a) of every critic, [n, B] float32 (of the target critics when ``target``)."""
        net = self.critic_target if target else self.critic
        return net(torch.cat([obs, action.to(obs.dtype)], -1), frozen).squeeze(-1).float()

    def policy_sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised action and the log-density of its squashed value in (−1, 1)^|A| (see module doc)."""
        head = self.actor.head
        action, log_prob = head.rsample(self.actor(obs))
        return action, log_prob + head.log_scale

    @torch.no_grad()
    def soft_target(self, reward: torch.Tensor, next_obs: torch.Tensor, terminated: torch.Tensor,
                    alpha: torch.Tensor) -> torch.Tensor:
        """y of eq. 11.5 with a fresh a' ~ π(·|s') and the target critics; a constant of the update (Rossi §2.1)."""
        next_action, next_log_prob = self.policy_sample(next_obs)
        next_q = self.q_values(next_obs, next_action, target=True)
        return soft_q_target(reward, terminated, next_q, next_log_prob, alpha, self.hp.gamma)

    def _compute_loss(self, obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor, next_obs: torch.Tensor,
                      terminated: torch.Tensor) -> dict[str, torch.Tensor]:
        hp = self.hp
        alpha = self.log_alpha.detach().exp()
        y = self.soft_target(reward, next_obs, terminated, alpha)
        q = self.q_values(obs, action)
        action_pi, log_prob = self.policy_sample(obs)
        q_pi = self.q_values(obs, action_pi, frozen=True)  # gradient to ã (the actor) only, never to the critics
        losses = {"critic": critic_loss(q, y), "actor": actor_loss(q_pi, log_prob, alpha)}
        if hp.autotune_alpha:
            losses["alpha"] = alpha_loss(self.log_alpha, log_prob, self.target_entropy)
        out = {f"loss/{k}": v for k, v in losses.items()}
        out.update({"stats/alpha": alpha, "stats/entropy": -log_prob.detach().mean(),
                    "stats/q_mean": q.detach().mean(), "stats/target_mean": y.mean()})
        return {"loss": sum(losses.values()), **out}  # type: ignore[dict-item]

    def training_step(self, dataloader_iter: Iterator[Any]) -> torch.Tensor:  # type: ignore[override]
        batch = self.next_batch(dataloader_iter)
        td = batch.td
        out = self._loss(td["observation"], td["action"], td["next", "reward"].squeeze(-1),
                         td["next", "observation"], td["next", "terminated"].squeeze(-1))
        loss = out.pop("loss")
        self.record(**out)
        return loss

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """The Adam step, then the Polyak update of the target critics (Alg. 11.1). Here, not in
        ``on_train_batch_end``: Lightning runs the callbacks' hooks (checkpoints) before the module's."""
        super().optimizer_step(*args, **kwargs)
        if (self.trainer.global_step + 1) % self.hp.target_update_every == 0:  # steps counted after this one
            polyak_update_(self.critic_target, self.critic, self.hp.tau)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hp
        parts = [(hp.actor_lr, list(self.actor.parameters())), (hp.critic_lr, list(self.critic.parameters()))]
        if hp.autotune_alpha:
            parts.append((hp.alpha_lr, [self.log_alpha]))
        by_lr: dict[float, list[nn.Parameter]] = {}  # one group per distinct step size: one fused kernel each
        for lr, params in parts:
            by_lr.setdefault(float(lr if lr is not None else hp.lr), []).extend(params)
        groups = [{"params": params, "lr": lr} for lr, params in by_lr.items()]
        return self.adam(groups, hp.lr, hp.adam_eps)
