"""Behavioural cloning (Rossi §13.1, §13.3, eq. 13.1–13.5; Yin §2.1): supervised learning of the expert's action
from the state, on (observation, action) pairs of demonstrations.

The policy is the policy-gradient family's own network, :class:`lrl.networks.PolicyNet` (an MLP body and a softmax
or diagonal-Gaussian head), because "it will be a neural network just like the one that you would build for a policy
network in RL" (Rossi §13.1): a cloned policy can be fine-tuned by RL, and ``algo.init_from`` in a PPO, A2C, TRPO,
NPG, KL-PPO, REINFORCE or off-policy PG recipe starts that algorithm's policy from this one's (Rossi §13.3).

Every gradient step takes one minibatch of demonstrations and minimises (:mod:`lrl.algos.bc.loss`)

    loss = L_fit − c_e · H[π_θ(·|s)] + c_2 · Σ‖W‖²

with L_fit the cross-entropy −mean log π_θ(a*|s) for discrete actions (eq. 13.1), and for continuous actions the
squared error mean ‖μ_θ(s) − a*‖² of the Gaussian's mean (eq. 13.5, ``loss: mse``) or the Gaussian's negative
log-likelihood with its learned log-std (``loss: gaussian_nll``). ``loss`` is ignored for discrete actions: a softmax
policy has one likelihood, and the cross-entropy is it. Under ``mse`` the log-std takes no gradient and keeps
``log_std_init``; it is what an RL algorithm started from this policy explores with.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import torch
from tensordict import TensorDict
from torch import nn

from lrl.algos.base import RLModule
from lrl.algos.bc.loss import bc_loss, discrete_bc_loss, gaussian_nll_bc_loss, l2_penalty, mse_bc_loss
from lrl.contract import Consumes
from lrl.errors import RecipeError
from lrl.networks import PolicyNet
from lrl.spec import Spec, policy_input


class ModePolicy(nn.Module):
    """BC's collection policy (a DAgger-style source rolls the learner out): the distribution's mode, the action
    evaluation and ``lrl.load_policy`` take, so the states visited are those the evaluated policy visits."""

    def __init__(self, net: PolicyNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, obs: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {"action": self.net.head.mode(self.net(obs))}


class BC(RLModule):
    consumes = Consumes(sources=("demos", "offline", "dagger", "hindsight"), keys=("observation", "action"),
                        observations=("box", "goal"), actions=("discrete", "continuous"))

    def __init__(
        self, spec: Spec, *,
        lr: float = 1e-3, lr_schedule: Literal["constant", "linear"] = "constant",
        loss: Literal["mse", "gaussian_nll"] = "mse", ent_coef: float = 0.0, l2_coef: float = 0.0,
        max_grad_norm: float | None = None, hidden: list[int] | None = None, activation: str = "tanh",
        log_std_init: float = 0.0, ortho_init: bool = True, adam_eps: float = 1e-8,
    ) -> None:
        """
        Args:
            lr, lr_schedule: Adam step size, constant or linear to 0 over the budget.
            loss: continuous actions only: ``mse`` on the Gaussian's mean (Rossi eq. 13.5) or ``gaussian_nll``
                with the learned log-std; discrete actions always use the cross-entropy (eq. 13.1).
            ent_coef: entropy bonus (subtracted from the loss); with ``loss: mse`` it is refused, as the entropy
                of a Gaussian does not depend on its mean and the bonus would only inflate the untrained log-std.
            l2_coef: weight of the explicit L2 penalty Σ‖W‖² on the policy's weight matrices (not its biases or
                log-std), logged as ``loss/l2``.
            max_grad_norm: global gradient-norm clip (None = off).
            hidden, activation: MLP sizes (default [64, 64], as the policy-gradient family, so ``init_from`` fits
                their defaults) and activation.
            log_std_init: initial log-std of the Gaussian head. ortho_init: orthogonal init as the RL policies.
            adam_eps: Adam ε.
        """
        super().__init__(spec)
        self.save_hyperparameters(ignore=["spec"])
        self.continuous = spec.action_kind == "continuous"
        if self.continuous and loss == "mse" and ent_coef > 0:
            raise RecipeError("algo.ent_coef: under algo.loss=mse the Gaussian's mean does not enter its entropy, so "
                              "the bonus would only grow the untrained log-std; use algo.loss=gaussian_nll or "
                              "algo.ent_coef=0")
        self.policy = PolicyNet(spec, hidden if hidden is not None else [64, 64], activation, log_std_init,
                                ortho_init)
        if self.continuous and loss == "mse":
            log_std = getattr(self.policy.head, "log_std", None)
            if isinstance(log_std, nn.Parameter):
                log_std.requires_grad_(False)  # no gradient reaches it: keep it out of DDP and the optimiser

    # --- acting ------------------------------------------------------------------------------------------------
    def collection_policy(self) -> nn.Module:
        return ModePolicy(self.policy)

    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        return self.policy.act(obs, deterministic)

    def policy_network(self) -> PolicyNet:
        return self.policy

    # --- update ------------------------------------------------------------------------------------------------
    def _input(self, td: TensorDict) -> torch.Tensor:
        """The policy's input: the observation, or for goal observations observation ++ desired goal."""
        if self.spec.obs_kind == "goal":
            return policy_input({"observation": td["observation"], "desired_goal": td["desired_goal"]})
        return td["observation"].float()

    def losses(self, td: TensorDict) -> dict[str, torch.Tensor]:
        """The loss and its parts on one minibatch of demonstrations (``observation``, ``action``)."""
        hp = self.hp
        params = self.policy(self._input(td))
        action = td["action"]
        if self.continuous:
            mean, log_std = params
            action = action.reshape(mean.shape).to(mean.dtype)
            fit = mse_bc_loss(mean, action) if hp.loss == "mse" else gaussian_nll_bc_loss(mean, log_std, action)
            quality = {"train/action_mse": (mean.detach() - action).pow(2).mean()}
        else:
            action = action.reshape(params[0].shape[:-1]).long()
            fit = discrete_bc_loss(params[0], action)
            quality = {"train/accuracy": (params[0].detach().argmax(-1) == action).float().mean()}
        entropy = self.policy.head.entropy(params).mean()
        l2 = l2_penalty([m.weight for m in self.policy.modules() if isinstance(m, nn.Linear)])
        total = bc_loss(fit, entropy, l2, ent_coef=hp.ent_coef, l2_coef=hp.l2_coef)
        return {"loss": total, "loss/bc": fit, "loss/l2": hp.l2_coef * l2, "stats/entropy": entropy, **quality}

    def training_step(self, dataloader_iter: Iterator[Any]) -> torch.Tensor:  # type: ignore[override]
        batch = self.next_batch(dataloader_iter)
        self.record(**{"stats/lr": self.scheduled_lr(batch.progress_remaining)})  # every step: no rollouts here
        out = self.losses(batch.td)
        self.record(**{"loss/total": out["loss"], **{k: v for k, v in out.items() if k != "loss"}})
        return out["loss"]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.adam([p for p in self.parameters() if p.requires_grad], self.hp.lr, self.hp.adam_eps)
