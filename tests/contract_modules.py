"""Two small modules that exercise the contract beyond environments (tests/integration/test_contract.py).

Named in recipes by import path (``algo.name: tests.contract_modules:Classifier``), as a user's own algorithm
would be: the registry imports them, ``lrl validate`` reads their ``consumes``, nothing else in lrl changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from torch import nn

from lrl.algos.base import RLModule
from lrl.contract import ROLLOUT_KEYS, Consumes
from lrl.networks import PolicyNet, SamplingPolicy
from lrl.spec import Spec


class Classifier(RLModule):
    """Supervised: maximise log π(a|s) over (observation, action) pairs of an offline dataset."""

    consumes = Consumes(sources=("offline", "demos", "dagger"), keys=("observation", "action"))

    def __init__(self, spec: Spec, *, lr: float = 1e-2, hidden: list[int] | None = None) -> None:
        super().__init__(spec)
        self.save_hyperparameters(ignore=["spec"])
        self.policy = PolicyNet(spec, hidden or [16], "tanh", 0.0, True)

    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        params = self.policy(obs)
        return self.policy.head.mode(params) if deterministic else self.policy.head.sample(params)

    def training_step(self, dataloader_iter: Iterator[Any]) -> torch.Tensor:  # type: ignore[override]
        td = self.next_batch(dataloader_iter).td
        loss = -self.policy.head.log_prob(self.policy(td["observation"]), td["action"]).mean()
        self.record(**{"loss/nll": loss})
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hp.lr)


class DemoRegularisedPG(RLModule):
    """Two streams in every update: the on-policy ``rollout`` (a REINFORCE-style term on the sampled actions' rewards)
    and the offline ``demos`` (a log-likelihood term on demonstrated actions). Records what it received, so the test
    can check sizes and each stream's boundary."""

    consumes = Consumes(sources=("onpolicy",), keys=ROLLOUT_KEYS, streams=("demos",))
    seen: ClassVar[list[tuple[int, int, bool, bool]]] = []  # (rollout rows, demo rows, rollout first, demos first)

    def __init__(self, spec: Spec, *, lr: float = 1e-2, demo_coef: float = 1.0, epochs: int = 1,
                 minibatch_size: int | None = None, gamma: float = 0.99) -> None:
        super().__init__(spec)
        self.save_hyperparameters(ignore=["spec"])
        self.policy = PolicyNet(spec, [16], "tanh", 0.0, True)

    def collection_policy(self) -> nn.Module:
        return SamplingPolicy(self.policy)

    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        params = self.policy(obs)
        return self.policy.head.mode(params) if deterministic else self.policy.head.sample(params)

    def training_step(self, dataloader_iter: Iterator[Any]) -> torch.Tensor:  # type: ignore[override]
        batch = self.next_batch(dataloader_iter)
        rollout, demos = batch.td, batch.streams["demos"]
        first_demos = batch.stream_first["demos"]
        DemoRegularisedPG.seen.append((rollout.batch_size[0], demos.batch_size[0], batch.first, first_demos))
        logp = self.policy.head.log_prob(self.policy(rollout["observation"]), rollout["action"])
        reward = rollout["next", "reward"].squeeze(-1)
        pg = -(logp * (reward - reward.mean())).mean()
        bc = -self.policy.head.log_prob(self.policy(demos["observation"]), demos["action"]).mean()
        self.record(**{"loss/pg": pg, "loss/demos": bc})
        return pg + self.hp.demo_coef * bc

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hp.lr)
