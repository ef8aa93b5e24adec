"""Off-policy policy gradient with importance sampling (Rossi ch. 4 Alg. 4.1, Atreya §2.1, Yin §4.4).

The module keeps two copies of the policy: θ, which is optimised, and a frozen behaviour copy β that collects
the rollouts (whole episodes, ``data.complete_episodes``). β ← θ after every ``sync_every`` rollouts' updates,
so each rollout is used for ``epochs`` updates of θ while β stays fixed: from the second update on (or
throughout, with ``sync_every`` > 1) θ learns from another policy's trajectories, which is where the weights
matter. Per update, with ρ_t = π_θ(a_t|s_t)/π_β(a_t|s_t) recomputed from the current θ:

    loss = −(1/|D|) Σ_τ Σ_t log π_θ(a_t|s_t) · sg(Ψ_t)

with Ψ from :func:`lrl.algos.offpg.loss.off_policy_advantages`: the whole-trajectory ratio, the exact
per-decision form, its Π_after-dropped "policy iteration" form, or the first-order ratio of Alg. 4.1 (default),
optionally clipped to [min_weight, max_weight]. Logged: the effective sample size (Σw)²/Σw² and weight
statistics. With β = θ every weight is exactly 1 and the update is REINFORCE's.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any, Literal

import torch
from tensordict import TensorDict
from torch import nn

from lrl.algos.base import RLModule
from lrl.algos.offpg.loss import Importance, off_policy_advantages
from lrl.contract import ROLLOUT_KEYS, Consumes, data_source
from lrl.errors import RecipeError
from lrl.estimators import effective_sample_size, episode_starts
from lrl.estimators.losses import masked_value_loss, policy_gradient_loss
from lrl.estimators.monte_carlo import Discounting, Returns, all_sum, annotate_returns, global_counts, masked_moments
from lrl.networks import PolicyNet, SamplingPolicy, value_net
from lrl.networks.encoders import Encoder
from lrl.spec import EnvSpec


class OffPolicyPG(RLModule):
    consumes = Consumes(sources=("onpolicy",), keys=ROLLOUT_KEYS, whole_episodes=True, whole_rollout=True,
                        observations=("box", "image"))

    ddp_find_unused_parameters = True  # passes beyond policy_epochs fit V only

    def __init__(
        self, spec: EnvSpec, *,
        epochs: int = 1,
        lr: float = 3e-4, value_lr: float = 1e-3, optimizer: Literal["adam", "sgd"] = "adam",
        gamma: float = 0.99, importance: Importance = "first_order", returns: Returns = "reward_to_go",
        discounting: Discounting = "relative", baseline: Literal["none", "average", "value"] = "none",
        bootstrap_truncated: bool = True, min_weight: float | None = None, max_weight: float | None = None,
        sync_every: int = 1, policy_epochs: int | None = None, normalize_advantage: bool = False,
        normalization: Literal["trajectory", "step"] = "trajectory", ent_coef: float = 0.0,
        max_grad_norm: float | None = None, hidden: list[int] | None = None, activation: str = "tanh",
        log_std_init: float = 0.0, ortho_init: bool = True, compile: bool = False,
        encoder: Encoder | None = None,
    ) -> None:
        """
        Args:
            epochs: whole-rollout passes per rollout (the update schedule).
            lr, value_lr, optimizer: step sizes of θ and of V, Adam or plain gradient ascent (Rossi Alg. 4.1).
            gamma, returns, discounting: as in ``reinforce``; ``returns: episode`` (G(τ)) pairs with
                ``importance: trajectory`` only (Rossi eq. 4.3), the other kinds weight rewards-to-go.
            importance: ``first_order`` (Alg. 4.1), ``current`` (eq. 4.6), ``per_decision`` (eq. 4.4) or
                ``trajectory`` (eq. 4.3); see :mod:`lrl.algos.offpg.loss`.
            baseline: ``none`` (Alg. 4.1), ``average`` return or learned ``value`` (fitted to β's returns).
            bootstrap_truncated: with the value baseline, continue returns cut by a time limit with V(final obs).
            min_weight, max_weight: clip the weights to this range (None = no bound); ``max_weight`` alone is
                truncation [NOT IN SEEDS: they only warn that ratio products explode or vanish].
            sync_every: β ← θ after the updates of every ``sync_every``-th rollout (1: β is the policy that was
                current when the rollout was collected).
            policy_epochs: how many of the ``epochs`` passes over a rollout update θ (None = all of them); V
                is fitted on every pass, so V can take more steps than θ.
            normalize_advantage: standardise Φ = returns − baseline over the rollout (all ranks) before weighting:
                the mean joins the baseline (so it is weighted like one and stays unbiased), then Ψ is divided by
                the standard deviation (Brunskill "can help").
            normalization: ``trajectory`` (the seeds' 1/|D|) or ``step`` (mean over steps).
            ent_coef, max_grad_norm, hidden, activation, log_std_init, ortho_init, compile: as in ``reinforce``.
            encoder: the CNN in front of the MLP on image observations, ``nature`` (default) or ``impala``
                (docs/atari.md); only for image observations.
        """
        super().__init__(spec)
        self.save_hyperparameters(ignore=["spec"])
        if returns == "episode" and importance != "trajectory":
            raise RecipeError("algo.returns=episode goes with algo.importance=trajectory (Rossi eq. 4.3); the "
                              "other importance kinds weight rewards-to-go")
        if sync_every < 1:
            raise RecipeError(f"algo.sync_every={sync_every} must be >= 1")
        self.automatic_optimization = False
        self.gamma = gamma
        hidden = hidden if hidden is not None else [64, 64]
        self.policy = PolicyNet(spec, hidden, activation, log_std_init, ortho_init, encoder)
        self.behaviour = copy.deepcopy(self.policy).requires_grad_(False)
        self.value = value_net(spec, hidden, activation, ortho_init, encoder) if baseline == "value" else None
        self._forward = self.maybe_compile(self._log_prob, compile)
        self._shape = (0, 0)
        self._scale = self._value_scale = torch.ones(())
        self._adv_mean, self._adv_inv_std = torch.zeros(()), torch.ones(())
        self._pass = 0

    # --- acting ------------------------------------------------------------------------------------------------
    def collection_policy(self) -> nn.Module:
        return SamplingPolicy(self.behaviour)

    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        return self.policy.act(obs, deterministic)

    def policy_network(self) -> PolicyNet:
        return self.policy  # algo.init_from starts it from another run's policy

    def load_policy_state(self, state: dict[str, torch.Tensor]) -> None:
        super().load_policy_state(state)
        self.behaviour.load_state_dict(self.policy.state_dict())  # β collects the first rollout: β = θ

    @classmethod
    def check_hparams(cls, args: dict[str, Any]) -> None:
        if args["policy_epochs"] is not None and not 1 <= args["policy_epochs"] <= args["epochs"]:
            raise RecipeError(f"algo.policy_epochs={args['policy_epochs']} must be between 1 and algo.epochs="
                              f"{args['epochs']} (the passes over each rollout)")

    def _v(self, obs: torch.Tensor) -> torch.Tensor:
        assert self.value is not None
        return self.value(obs).squeeze(-1).float()

    @torch.no_grad()
    def process_rollout(self, td: TensorDict) -> TensorDict:
        """Returns and baselines as in REINFORCE, plus log π_β(a_t|s_t) recomputed on the flattened rollout: the
        same computation the update does for θ, so that with θ = β the ratios are exactly 1 (the collector's
        per-step ``sample_log_prob`` equals it only up to float rounding of differently batched matmuls)."""
        hp = self.hp
        value = self._v(td["observation"]) if self.value is not None else None
        next_value = self._v(td["next", "observation"]) if value is not None and hp.bootstrap_truncated else None
        self.record(**annotate_returns(td, gamma=hp.gamma, returns=hp.returns, discounting=hp.discounting,
                                       baseline=hp.baseline, value=value, next_value=next_value))
        flat = td.reshape(-1)
        td.set("behaviour_log_prob", self._log_prob(self.behaviour, flat["observation"], flat["action"])[0]
               .view(td.batch_size))
        self._shape = tuple(td.batch_size)  # type: ignore[assignment]
        trajectories, steps = global_counts(td)
        world = self._trainer.world_size if self._trainer is not None else 1
        self._scale = world / (trajectories if hp.normalization == "trajectory" else steps)
        self._value_scale = world / steps
        if hp.normalize_advantage:
            s, s2, n = (all_sum(t) for t in masked_moments(td["returns"] - td["baseline"], td["mask"]))
            self._adv_mean = s / n
            self._adv_inv_std = 1.0 / ((s2 / n - self._adv_mean**2).clamp_min(0.0).sqrt() + 1e-8)
        return td

    # --- update ------------------------------------------------------------------------------------------------
    def _log_prob(self, net: nn.Module, obs: torch.Tensor, action: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        params = net(obs)
        return self.policy.head.log_prob(params, action), self.policy.head.entropy(params)

    def weights(self, td: TensorDict, logp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(Ψ, weights, clipped) for a whole flattened rollout ``td`` and the current log π_θ on it."""
        hp, shape = self.hp, self._shape
        mask = td["mask"].view(shape)
        log_ratio = ((logp.detach().view(shape) - td["behaviour_log_prob"].view(shape)) * mask)
        psi, w, clipped = off_policy_advantages(
            log_ratio, td["next", "done"].view(shape), kind=hp.importance, returns=td["returns"].view(shape),
            baseline=td["baseline"].view(shape) + self._adv_mean, reward=td["next", "reward"].view(shape),
            bootstrap=td["bootstrap"].view(shape), gamma=hp.gamma, discounting=hp.discounting,
            min_weight=hp.min_weight, max_weight=hp.max_weight)
        return (psi * self._adv_inv_std).reshape(-1), w.reshape(-1), clipped.reshape(-1)

    def _record_weights(self, td: TensorDict, w: torch.Tensor, clipped: torch.Tensor) -> None:
        """ESS and weight statistics over trajectories (``trajectory``: one weight each) or real steps."""
        mask = td["mask"]
        if self.hp.importance == "trajectory":
            mask = mask & episode_starts(td["next", "done"].view(self._shape)).reshape(-1)
        ess = effective_sample_size(w, mask)
        counted = w[mask]
        self.record(**{"stats/ess": ess, "stats/ess_fraction": ess / mask.sum().clamp_min(1),
                       "stats/weight_mean": counted.mean(), "stats/weight_max": counted.max(),
                       "stats/weight_min": counted.min(), "stats/weight_clip_fraction": clipped[mask].float().mean()})

    def training_step(self, dataloader_iter: Iterator[Any]) -> None:  # type: ignore[override]
        batch = self.next_batch(dataloader_iter)
        hp = self.hp
        if batch.first:
            self._pass = 0
        td, mask = batch.td, batch.td["mask"].float()
        opts: Any = self.optimizers()
        policy_opt, value_opt = opts if isinstance(opts, list) else (opts, None)
        step_policy = hp.policy_epochs is None or self._pass < hp.policy_epochs
        self._pass += 1
        loss = torch.zeros((), device=self.device)
        if step_policy:
            logp, entropy = self._forward(self.policy, td["observation"], td["action"])
            psi, w, clipped = self.weights(td, logp)
            entropy = (entropy * mask).sum() / mask.sum()
            pg = policy_gradient_loss(logp, psi, mask, 1.0 / self._scale)
            loss = pg - hp.ent_coef * entropy
            self._record_weights(td, w, clipped)
            self.record(**{"loss/policy": pg, "stats/entropy": entropy})
        if self.value is not None:
            v_loss = masked_value_loss(self._v(td["observation"]), td["value_target"], mask, 1.0 / self._value_scale)
            loss = loss + v_loss
            self.record(**{"loss/value": v_loss})
        if loss.requires_grad:
            policy_opt.zero_grad()
            if value_opt is not None:
                value_opt.zero_grad()
            self.manual_backward(loss)
            for opt in (policy_opt if step_policy else None, value_opt):
                if opt is not None:
                    if hp.max_grad_norm is not None:
                        self.clip_gradients(opt, gradient_clip_val=hp.max_grad_norm, gradient_clip_algorithm="norm")
                    opt.step()
        last_update = data_source(self.trainer).at_boundary
        if last_update and batch.rollout % hp.sync_every == 0:
            self.behaviour.load_state_dict(self.policy.state_dict())  # β ← θ (identical on every rank)
        return None

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        nets = [self.policy] + ([self.value] if self.value is not None else [])
        lrs = [self.hp.lr, self.hp.value_lr]
        cls = torch.optim.SGD if self.hp.optimizer == "sgd" else torch.optim.Adam
        return [cls(n.parameters(), lr=lr) for n, lr in zip(nets, lrs, strict=False)]

