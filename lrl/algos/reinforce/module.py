"""REINFORCE / vanilla policy gradient with Monte-Carlo returns (Rossi ch. 3 Algs 3.1–3.2, Yin ch. 4
Alg. 2, Brunskill "Vanilla Policy Gradient", Atreya §2 Alg. 1; Williams 1992).

Per rollout of whole episodes (``data.complete_episodes``), :meth:`process_rollout` computes without gradients
Φ_t = the whole return G(τ) or the reward-to-go G_t (relative or seed-exact absolute discounting), minus a
baseline: none, the average return, V(s_t) of a learned value network, or the optimal per-component baseline
b*_j = E[g_j² r]/E[g_j²] of Yin §4.3.2 (computed in the update, it needs per-trajectory score gradients).
Then ``epochs`` whole-rollout passes: on the first ``policy_epochs`` of them (default 1, the seeds' "one
gradient step per batch") a policy step on

    loss = −(1/|D|) Σ_τ Σ_t log π_θ(a_t|s_t) · sg(Φ_t)          (sum over time, mean over trajectories)

and, with the value baseline, a value step on every pass, Σ (V(s_t) − G_t)² / #steps (Rossi Alg. 3.3's N
critic steps, Brunskill's "refit the baseline"), with its own optimiser and step size (ω, Rossi Alg. 3.3).
``normalization: step`` divides by the number of steps instead (TorchRL's ``ReinforceLoss``, SB3's A2C).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import torch
from tensordict import TensorDict
from torch import nn
from torch.func import functional_call

from lrl.algos.base import RLModule
from lrl.algos.reinforce.loss import linear_surrogate
from lrl.contract import ROLLOUT_KEYS, Consumes
from lrl.errors import RecipeError
from lrl.estimators import episode_index, optimal_baseline, trajectory_scores
from lrl.estimators.losses import masked_value_loss, policy_gradient_loss
from lrl.estimators.monte_carlo import (
    Baseline,
    Discounting,
    Returns,
    all_sum,
    annotate_returns,
    global_counts,
    masked_moments,
)
from lrl.networks import PolicyNet, SamplingPolicy, value_net
from lrl.networks.encoders import Encoder
from lrl.spec import EnvSpec


class Reinforce(RLModule):
    consumes = Consumes(sources=("onpolicy",), keys=ROLLOUT_KEYS, whole_episodes=True, whole_rollout=True,
                        observations=("box", "image"))

    ddp_find_unused_parameters = True  # value-only passes leave the policy without gradients

    def __init__(
        self, spec: EnvSpec, *,
        epochs: int = 1,
        lr: float = 3e-4, value_lr: float = 1e-3, optimizer: Literal["adam", "sgd"] = "adam",
        gamma: float = 0.99, returns: Returns = "reward_to_go", discounting: Discounting = "relative",
        baseline: Baseline = "none", bootstrap_truncated: bool = True, normalize_advantage: bool = False,
        normalization: Literal["trajectory", "step"] = "trajectory", policy_epochs: int = 1,
        ent_coef: float = 0.0, max_grad_norm: float | None = None, hidden: list[int] | None = None,
        activation: str = "tanh", log_std_init: float = 0.0, ortho_init: bool = True, compile: bool = False,
        encoder: Encoder | None = None,
    ) -> None:
        """
        Args:
            epochs: whole-rollout passes per rollout (the update schedule).
            lr, value_lr: step sizes η of the policy and ω of the value network (Rossi Alg. 3.3); the
                defaults are Spinning Up's VPG ones.
            optimizer: ``adam`` or plain gradient ascent ``sgd`` ("or other methods like Adam", Rossi Alg. 3.1).
            gamma: discount (γ = 1 for finite-horizon tasks, Rossi §3.3).
            returns: ``reward_to_go`` (causality, Yin §4.3.1, Rossi Alg. 3.2) or ``episode`` G(τ).
            discounting: ``relative`` γ^{k−t} (default) or ``absolute`` γ^k (Rossi eq. 3.26).
            baseline: ``none``, ``average`` (batch mean return), ``optimal`` (per-component b*, Yin §4.3.2) or
                ``value`` (learned V(s_t), Brunskill, Rossi §3.5).
            bootstrap_truncated: with the value baseline, continue returns cut by a time limit with V(final obs).
            normalize_advantage: standardise Φ over the rollout (all ranks) after the baseline (Brunskill "can help").
            normalization: ``trajectory`` (the seeds' mean over trajectories) or ``step`` (mean over steps).
            policy_epochs: how many of the ``epochs`` passes also step the policy (the rest fit V only).
            ent_coef: entropy bonus [NOT IN SEEDS]. max_grad_norm: per-network gradient-norm clip (None = off).
            hidden, activation: MLP sizes (default [64, 64]) and activation, for the policy and V.
            log_std_init: initial log-std of the Gaussian head. ortho_init: orthogonal initialisation.
            compile: ``torch.compile`` the policy-loss computation.
            encoder: the CNN in front of the MLP on image observations, ``nature`` (default) or ``impala``
                (docs/atari.md); only for image observations.
        """
        super().__init__(spec)
        self.save_hyperparameters(ignore=["spec"])
        if baseline == "optimal" and normalize_advantage:
            raise RecipeError("algo.baseline=optimal sets its own per-parameter baseline; use "
                              "algo.normalize_advantage=false")
        self.automatic_optimization = False
        self.gamma = gamma
        hidden = hidden if hidden is not None else [64, 64]
        self.policy = PolicyNet(spec, hidden, activation, log_std_init, ortho_init, encoder)
        self.value = value_net(spec, hidden, activation, ortho_init, encoder) if baseline == "value" else None
        self._loss = self.maybe_compile(self._policy_loss, compile)
        self._pass = 0
        self._scale = self._value_scale = torch.ones(())
        self._num_episodes = 0

    # --- acting ------------------------------------------------------------------------------------------------
    def collection_policy(self) -> nn.Module:
        return SamplingPolicy(self.policy)

    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        return self.policy.act(obs, deterministic)

    def policy_network(self) -> PolicyNet:
        return self.policy  # algo.init_from starts it from another run's policy

    @classmethod
    def check_hparams(cls, args: dict[str, Any]) -> None:
        if args["policy_epochs"] > args["epochs"]:
            raise RecipeError(f"algo.policy_epochs={args['policy_epochs']} exceeds algo.epochs={args['epochs']} (the "
                              "passes over each rollout); raise algo.epochs or lower algo.policy_epochs")

    def _v(self, obs: torch.Tensor) -> torch.Tensor:
        assert self.value is not None
        return self.value(obs).squeeze(-1).float()

    @torch.no_grad()
    def process_rollout(self, td: TensorDict) -> TensorDict:
        hp = self.hp
        value = self._v(td["observation"]) if self.value is not None else None
        next_value = self._v(td["next", "observation"]) if value is not None and hp.bootstrap_truncated else None
        stats = annotate_returns(td, gamma=hp.gamma, returns=hp.returns, discounting=hp.discounting,
                                 baseline=hp.baseline, value=value, next_value=next_value)
        phi = td["returns"] - td["baseline"]
        mask = td["mask"]
        if hp.normalize_advantage:
            s, s2, n = (all_sum(t) for t in masked_moments(phi, mask))
            mean = s / n
            phi = (phi - mean) / ((s2 / n - mean**2).clamp_min(0.0).sqrt() + 1e-8)
        td.set("phi", phi)
        trajectories, steps = global_counts(td)
        world = self._trainer.world_size if self._trainer is not None else 1
        self._scale = world / (trajectories if hp.normalization == "trajectory" else steps)
        self._value_scale = world / steps
        if hp.baseline == "optimal":
            done = td["next", "done"].squeeze(-1)
            td.set("episode", episode_index(done.reshape(-1), mask.reshape(-1)).view(done.shape))
            self._num_episodes = int((done & mask).sum())
        self.record(**stats)
        return td

    # --- update ------------------------------------------------------------------------------------------------
    def _policy_loss(self, obs: torch.Tensor, action: torch.Tensor, phi: torch.Tensor, mask: torch.Tensor,
                     scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        params = self.policy(obs)
        logp = self.policy.head.log_prob(params, action)
        entropy = (self.policy.head.entropy(params) * mask).sum() / mask.sum()
        return policy_gradient_loss(logp, phi, mask, 1.0 / scale), entropy, logp

    def _optimal_baseline_loss(self, td: TensorDict, mask: torch.Tensor) -> torch.Tensor:
        """Yin §4.3.2: ĝ_j = (1/N) Σ_i Σ_t ∇_j log π(a_t|s_t)(Φ_t − b*_j), b*_j = E[X_j Y_j]/E[Y_j²] over all
        ranks' trajectories (X_i = Σ_t ∇log π·Φ_t, Y_i = g(τ_i)); applied through :func:`linear_surrogate`."""
        params = dict(self.policy.named_parameters())

        def log_prob(p: dict[str, torch.Tensor], o: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
            return self.policy.head.log_prob(functional_call(self.policy, p, (o,)), a)

        with torch.autocast(self.device.type, enabled=False):  # per-trajectory gradients in float32
            y, x = trajectory_scores(log_prob, params, td["observation"].float(), td["action"], td["phi"],
                                     td["episode"], mask, self._num_episodes)
        b = optimal_baseline(x, y, reduce=all_sum)
        grad = (x - b * y).sum(0) * self._scale
        self.record(**{"stats/baseline": b.mean()})
        sizes = [p.numel() for p in params.values()]
        grads = [g.view_as(p) for g, p in zip(grad.split(sizes), params.values(), strict=True)]
        return linear_surrogate(list(params.values()), grads)

    def training_step(self, dataloader_iter: Iterator[Any]) -> None:  # type: ignore[override]
        batch = self.next_batch(dataloader_iter)
        hp = self.hp
        if batch.first:
            self._pass = 0
        td, mask = batch.td, batch.td["mask"].float()
        opts = self.optimizers()
        policy_opt, value_opt = opts if isinstance(opts, list) else (opts, None)
        step_policy = self._pass < hp.policy_epochs
        self._pass += 1
        loss = torch.zeros((), device=self.device)
        if step_policy:
            pg, entropy, logp = self._loss(td["observation"], td["action"], td["phi"], mask, self._scale)
            loss = self._optimal_baseline_loss(td, mask) if hp.baseline == "optimal" else pg
            loss = loss - hp.ent_coef * entropy
            self.record(**{"loss/policy": pg, "stats/entropy": entropy})
        if self.value is not None:
            v_loss = masked_value_loss(self._v(td["observation"]), td["value_target"], mask, 1.0 / self._value_scale)
            loss = loss + v_loss
            self.record(**{"loss/value": v_loss})
        if not loss.requires_grad:
            return None
        policy_opt.zero_grad()
        if value_opt is not None:
            value_opt.zero_grad()
        self.manual_backward(loss)
        if step_policy:
            self._clip(policy_opt)
            policy_opt.step()
            with torch.no_grad():  # how far the step moved the policy: KL̂(old‖new) on the batch
                new = self.policy.head.log_prob(self.policy(td["observation"]), td["action"])
                self.record(**{"stats/approx_kl": ((logp.detach() - new) * mask).sum() / mask.sum()})
        if value_opt is not None:
            self._clip(value_opt)
            value_opt.step()
        return None

    def _clip(self, opt: Any) -> None:
        if self.hp.max_grad_norm is not None:
            self.clip_gradients(opt, gradient_clip_val=self.hp.max_grad_norm, gradient_clip_algorithm="norm")

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        nets = [self.policy] + ([self.value] if self.value is not None else [])
        lrs = [self.hp.lr, self.hp.value_lr]
        if self.hp.optimizer == "sgd":
            return [torch.optim.SGD(n.parameters(), lr=lr) for n, lr in zip(nets, lrs, strict=False)]
        return [torch.optim.Adam(n.parameters(), lr=lr) for n, lr in zip(nets, lrs, strict=False)]
