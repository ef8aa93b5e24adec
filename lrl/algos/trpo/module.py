"""Trust Region Policy Optimisation and the Natural Policy Gradient (Schulman et al. 2015; Kakade 2002); NPG is
this class without the line search (:class:`lrl.algos.npg.module.NPG`).

Seeds: 004 ch. 6 (Alg. 6.1, NPG) and ch. 7 (Alg. 7.1, TRPO), 003 (Algs. 1–3: "TRPO = NPG + line search"),
000 §1/§3, 001 §4.5. One update per rollout, on the whole rollout (declared in ``consumes``):

1. :meth:`process_rollout` (no gradients): V(s_t), V(s'_t), GAE(γ, λ) advantages and λ-return value targets.
   λ = 1 gives the seeds' Monte-Carlo advantage Â_t = G_t − V(s_t) (Alg. 6.1/7.1), bootstrapped from V at
   time-limit truncations and at the rollout's end; terminations do not bootstrap.
2. Policy step, in float32 whatever the trainer's precision: g = ∇ mean(ratio·Â) at θ (= the vanilla PG,
   eq. 7.39), x ≈ F⁻¹g by conjugate gradient with Fisher-vector products of the mean KL(old‖new)
   (``lrl.estimators``), full step Δ = sqrt(2δ / xᵀFx)·x (eq. 7.50). NPG applies Δ (Alg. 6.1); TRPO backtracks
   b^j·Δ, j ≤ U, until mean KL ≤ δ and the surrogate improved, and otherwise leaves θ unchanged (Alg. 7.1).
3. Value function fitted separately: ``critic_epochs`` passes of Adam steps on E[(V − V_targ)²]
   (Alg. 6.1/7.1's Z critic steps, descending: the source's ascent sign is a typo).

Under DDP the policy step is taken with ``torch.autograd.grad``, which DistributedDataParallel never sees: g,
every Fisher-vector product and the line-search statistics are averaged across ranks explicitly, so all ranks
compute the identical step. Critic gradients go through ``manual_backward`` (DDP averages them).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar, Literal

import torch
from tensordict import TensorDict
from torch import nn

from lrl.algos.base import RLModule
from lrl.algos.trpo.loss import backtracking_line_search, natural_step_scale
from lrl.contract import ROLLOUT_KEYS, Consumes
from lrl.errors import RecipeError
from lrl.estimators import annotate_gae, normalize_advantage
from lrl.estimators.cg import conjugate_gradient
from lrl.estimators.fisher import (
    Params,
    all_reduce_mean,
    fisher_vector_product,
    flat_grad,
    flat_params,
    set_flat_params_,
    subsample,
)
from lrl.estimators.losses import surrogate, value_loss
from lrl.networks import ActorCritic, CategoricalHead, SamplingPolicy
from lrl.networks.encoders import Encoder
from lrl.spec import EnvSpec


class TRPO(RLModule):
    """TRPO: the natural-gradient step of NPG followed by a backtracking line search on the real KL and
    surrogate (Rossi Alg. 7.1). See the module docstring for the update, ``__init__`` for the options."""

    consumes = Consumes(sources=("onpolicy",), keys=ROLLOUT_KEYS, whole_rollout=True, single_pass=True,
                        observations=("box", "image"))

    ddp_find_unused_parameters = True  # critic steps leave the actor's parameters without gradients
    line_search_default: ClassVar[bool] = True

    def __init__(
        self, spec: EnvSpec, *,
        max_kl: float = 0.01, line_search: bool | None = None, backtrack_coef: float = 0.8, max_backtracks: int = 10,
        step_size: float | None = None, cg_iterations: int = 10, cg_residual_tol: float = 1e-10,
        damping: float = 0.1, fvp_fraction: float = 1.0, fvp_method: Literal["hessian", "jmj"] = "hessian",
        gamma: float = 0.99, gae_lambda: float = 1.0, normalize_advantage: bool = True,
        critic_lr: float = 1e-3, critic_epochs: int = 10, critic_minibatch_size: int | None = 128,
        hidden: list[int] | None = None, activation: str = "tanh", log_std_init: float = 0.0,
        ortho_init: bool = True, adam_eps: float = 1e-5, compile: bool = False,
        encoder: Encoder | None = None,
    ) -> None:
        """
        Args:
            max_kl: trust-region size δ (β in Rossi, ε for NPG): bound on the mean KL(old‖new) over states.
            line_search: backtracking line search (TRPO); None = the algorithm's own choice (trpo on, npg off).
            backtrack_coef, max_backtracks: b ∈ (0, 1) and U of Rossi Alg. 7.1 (α and L in Fragkiadaki).
            step_size: a fixed η for the step η·x instead of sqrt(2δ/xᵀFx) (Rossi Alg. 6.1 "or with other
                method"; Yin §4.5 θ ← θ + α F⁻¹∇J); None = the trust-region step.
            cg_iterations, cg_residual_tol: n_cg of Fragkiadaki and the early stop on ‖r‖².
            damping: c in (F + cI)x = g [NOT IN SEEDS; TRPO practice].
            fvp_fraction: share of the rollout's states used for Fisher-vector products (Rossi §7.8.1: ~10 %).
            fvp_method: ``hessian`` (double backprop, §7.8.2) or ``jmj`` (JᵀMJ, §7.8.1).
            gamma, gae_lambda: discount and GAE λ (Rossi ch. 5); λ = 1 is the seeds' G − V.
            normalize_advantage: standardise Â over the rollout (Brunskill's trick; SB3-contrib's default).
            critic_lr, critic_epochs, critic_minibatch_size: Adam step size, passes over the rollout and global
                minibatch size of the value fit (None = full-batch steps, the seeds' Z gradient steps).
            hidden, activation: MLP sizes (default [64, 64]) of the separate actor and critic bodies.
            log_std_init: initial log-std of the Gaussian head (continuous actions).
            ortho_init, adam_eps: reference-implementation initialisation and critic Adam ε.
            compile: ``torch.compile`` the critic loss (the policy step needs double backprop, not compiled).
            encoder: the CNN in front of the MLP on image observations, ``nature`` (default) or ``impala``
                (docs/atari.md); only for image observations.
        """
        super().__init__(spec)
        self.save_hyperparameters(ignore=["spec"])
        self.automatic_optimization = False
        if not 0.0 < fvp_fraction <= 1.0:
            raise RecipeError(f"algo.fvp_fraction={fvp_fraction} must be in (0, 1]")
        if not 0.0 < backtrack_coef < 1.0:
            raise RecipeError(f"algo.backtrack_coef={backtrack_coef} must be in (0, 1)")
        self.gamma = gamma
        self.line_search = self.line_search_default if line_search is None else line_search
        self.net = ActorCritic(spec, hidden if hidden is not None else [64, 64], activation, False,
                               log_std_init, ortho_init, encoder)
        self._critic_loss = self.maybe_compile(self._compute_critic_loss, compile)
        self._seed = torch.initial_seed()  # seeded by the launcher: per-rollout generators below are reproducible

    def actor_parameters(self) -> list[nn.Parameter]:
        return [*self.net.actor_body.parameters(), *self.net.head.parameters()]

    def critic_parameters(self) -> list[nn.Parameter]:
        return [*self.net.critic_body.parameters(), *self.net.value_out.parameters()]

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
    def on_fit_start(self) -> None:
        mb, world = self.hp.critic_minibatch_size, self.trainer.world_size
        if mb is not None and mb % world:
            raise RecipeError(f"algo.critic_minibatch_size={mb} must be divisible by the number of processes ({world})")

    def _generator(self, rollout: int) -> torch.Generator:
        """Subsampling and critic minibatches: a fresh generator per rollout, so a resumed run draws the same."""
        return torch.Generator().manual_seed((self._seed * 1_000_003 + rollout) % 2**63)

    def _kl(self, old: Params, new: Params) -> torch.Tensor:
        """KL(old ‖ new) per state in closed form. For JᵀMJ the new log-probs are renormalised: same value, but
        stationary at new = old in the head's coordinates, which §7.8.1's derivation assumes."""
        if self.hp.fvp_method == "jmj" and isinstance(self.net.head, CategoricalHead):
            new = (torch.log_softmax(new[0], dim=-1),)
        return self.net.head.kl(old, new)

    def _policy_step(self, obs: torch.Tensor, action: torch.Tensor, adv: torch.Tensor,
                     gen: torch.Generator) -> None:
        hp, head, params = self.hp, self.net.head, self.actor_parameters()
        dist = self.net.policy_params(obs)
        old = tuple(t.detach().clone() for t in dist)  # a copy: the Gaussian's log-std is a view of θ
        logp = head.log_prob(dist, action)
        old_logp = logp.detach()  # π_θk(a|s) without gradient (Alg. 7.1)
        surr = surrogate(logp, old_logp, adv)
        g = all_reduce_mean(flat_grad(surr, params, retain_graph=True))
        idx = subsample(obs.shape[0], hp.fvp_fraction, gen, obs.device)
        fvp_dist = dist if idx is None else self.net.policy_params(obs[idx])
        fvp = fisher_vector_product(self._kl, fvp_dist, params, damping=hp.damping, method=hp.fvp_method,
                                    reduce=all_reduce_mean)
        cg = conjugate_gradient(fvp, g, max_iterations=hp.cg_iterations, residual_tol=hp.cg_residual_tol)
        scale = torch.tensor(hp.step_size) if hp.step_size is not None else natural_step_scale(cg.x, fvp(cg.x),
                                                                                                hp.max_kl)
        step = scale * cg.x
        theta = flat_params(params)
        old_surr = all_reduce_mean(surr.detach().clone()).item()

        @torch.no_grad()
        def evaluate(fraction: float) -> tuple[float, float]:
            set_flat_params_(params, theta + fraction * step)
            new = self.net.policy_params(obs)
            stats = torch.stack([head.kl(old, new).mean(), surrogate(head.log_prob(new, action), old_logp, adv)])
            kl, s = all_reduce_mean(stats).tolist()
            return kl, s

        if self.line_search:
            ls = backtracking_line_search(evaluate, old_surrogate=old_surr, max_kl=hp.max_kl,
                                          backtrack_coef=hp.backtrack_coef, max_backtracks=hp.max_backtracks)
            if not ls.accepted:
                set_flat_params_(params, theta)  # rejected: θ exactly as before (bitwise)
            kl, new_surr, fraction = ls.kl, ls.surrogate, ls.fraction
            self.record(**{"stats/line_search_accepted": float(ls.accepted),
                           "stats/line_search_backtracks": float(ls.backtracks)})
        else:
            kl, new_surr = evaluate(1.0)  # NPG: the full step, KL and surrogate measured for the logs
            fraction = 1.0
        stats: dict[str, torch.Tensor | float] = {
            "loss/policy": -surr.detach(), "stats/kl": kl, "stats/step_scale": scale,
            "stats/surrogate_improvement": new_surr - old_surr, "stats/expected_improvement": fraction * g.dot(step),
            "stats/cg_iterations": float(cg.iterations), "stats/cg_residual": cg.residual_sq,
            "stats/entropy": head.entropy(old).mean()}
        self.record(**stats)

    def _compute_critic_loss(self, obs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return value_loss(self.net.value(obs), target)

    def _critic_steps(self, obs: torch.Tensor, target: torch.Tensor, gen: torch.Generator) -> None:
        opt: Any = self.optimizers()
        n, mb = obs.shape[0], self.hp.critic_minibatch_size
        mb = n if mb is None else mb // self.trainer.world_size
        for _ in range(self.hp.critic_epochs):
            order = torch.randperm(n, generator=gen).to(obs.device) if mb < n else torch.arange(n, device=obs.device)
            for idx in order.split(mb):
                loss = self._critic_loss(obs[idx], target[idx])
                opt.zero_grad()
                self.manual_backward(loss)
                opt.step()
                self.record(**{"loss/value": loss.detach()})

    def training_step(self, dataloader_iter: Iterator[Any]) -> None:  # type: ignore[override]
        batch = self.next_batch(dataloader_iter)
        td = batch.td
        obs, adv = td["observation"], td["advantage"]
        if self.hp.normalize_advantage:
            adv = normalize_advantage(adv)
        gen = self._generator(batch.rollout)
        with torch.autocast(self.device.type, enabled=False):  # CG on bf16 products would be noise
            self._policy_step(obs.float(), td["action"], adv.float(), gen)
        self._critic_steps(obs, td["value_target"], gen)
        log_std = getattr(self.net.head, "log_std", None)
        if log_std is not None:
            self.record(**{"stats/std": log_std.detach().exp().mean()})

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.adam(self.critic_parameters(), self.hp.critic_lr, self.hp.adam_eps)

