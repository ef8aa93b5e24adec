"""The learned reward r̂(s, a): an ensemble of small MLPs trained on labelled segment pairs with the Bradley-Terry
loss (:mod:`lrl.rlhf.loss`) and Christiano et al.'s refinements (docs/rlhf.md):

- every member is trained on a bootstrap resample (with replacement, |D| pairs) of the training pairs;
- every member is normalised to zero mean and unit std on a reference batch of recent (s, a), and r̂ is the mean
  of the normalised members;
- a validation split (a fixed share of the labelled pairs, chosen per pair when it arrives);
- an ℓ2 penalty whose coefficient is adapted after every update: ``l2_target: validation`` (Christiano's paper,
  default) keeps the validation loss within [1.1, 1.5] × the training loss (×1.1 above, ÷1.1 below);
  ``l2_target: regularisation`` (Rossi's wording) keeps the regularisation loss within [1, 1.5] × the training loss;
- dropout in the members.

Termination ("absorbing"): each member also learns r̂_abs, the reward of the absorbing state an episode stays in
after it terminates, so segments that end in a termination are padded to length k with it and the learner can be
told what ending an episode is worth (docs/rlhf.md, "Termination").

Plain Python around modules: the policy's Lightning/DDP wrapper never sees these parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lrl.rlhf.loss import bradley_terry_loss, disagreement
from lrl.spec import Spec


def features(spec: Spec, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """The reward model's input for (s, a): the flat observation and the action (one-hot when discrete)."""
    nd = len(spec.obs_shape)
    obs = (obs.flatten(-nd) if nd else obs.unsqueeze(-1)).float()
    if spec.action_kind == "discrete":  # actions [...] (or [..., 1]) of indices
        act = nn.functional.one_hot(action.reshape(obs.shape[:-1]).long(), spec.action_dim).float()
    else:
        act = action.reshape(*obs.shape[:-1], -1).float()
    return torch.cat([obs, act], -1)


def feature_dim(spec: Spec) -> int:
    return spec.obs_dim + spec.action_dim


class RewardEnsemble(nn.Module):
    """``members`` MLPs r̂_i(x) with dropout, each with its learned absorbing reward and its normalisation."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, in_dim: int, members: int, hidden: list[int], dropout: float) -> None:
        super().__init__()
        self.members = nn.ModuleList()
        for _ in range(members):
            layers: list[nn.Module] = []
            d = in_dim
            for h in hidden:
                layers += [nn.Linear(d, h), nn.LeakyReLU(), nn.Dropout(dropout)]
                d = h
            layers.append(nn.Linear(d, 1))
            self.members.append(nn.Sequential(*layers))
        self.absorbing = nn.Parameter(torch.zeros(members))
        self.use_absorbing = True  # False (``termination: keep``): absorbed steps earn nothing
        self.register_buffer("mean", torch.zeros(members))
        self.register_buffer("std", torch.ones(members))

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """Unnormalised per-member rewards ``[members, ...]`` for inputs ``[..., in_dim]``."""
        return torch.stack([m(x).squeeze(-1) for m in self.members])

    def segment_returns(self, x: torch.Tensor, absorbed: torch.Tensor) -> torch.Tensor:
        """Per-member raw returns ``[members, P]`` of segments ``x [P, k, in_dim]``; steps where ``absorbed``
        (after the episode terminated) earn the member's absorbing reward instead."""
        r = self.raw(x)
        a = absorbed.to(r.dtype)
        r = r * (1 - a) + (self.absorbing.view(-1, 1, 1) * a if self.use_absorbing else 0)
        return r.sum(-1)

    @torch.no_grad()
    def normalise(self, reference: torch.Tensor) -> None:
        """Set each member's affine map so that its output on ``reference [B, in_dim]`` has mean 0, std 1."""
        was = self.training
        self.eval()
        r = self.raw(reference)
        self.mean.copy_(r.mean(1))
        self.std.copy_(r.std(1, unbiased=False).clamp_min(1e-6))
        self.train(was)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """r̂(x): the mean over members of their normalised outputs."""
        r = self.raw(x)
        shape = (-1,) + (1,) * (r.dim() - 1)
        return ((r - self.mean.view(shape)) / self.std.view(shape)).mean(0)

    def absorbing_reward(self) -> torch.Tensor:
        """The normalised absorbing reward (mean over members)."""
        return ((self.absorbing - self.mean) / self.std).mean()


@dataclass
class Pairs:
    """Labelled pairs as tensors: inputs ``x1, x2 [P, k, in_dim]``, absorbed masks ``a1, a2 [P, k]``, ``mu1 [P]``."""

    x1: torch.Tensor
    a1: torch.Tensor
    x2: torch.Tensor
    a2: torch.Tensor
    mu1: torch.Tensor

    def __len__(self) -> int:
        return int(self.mu1.shape[0])

    def take(self, idx: torch.Tensor) -> Pairs:
        return Pairs(self.x1[idx], self.a1[idx], self.x2[idx], self.a2[idx], self.mu1[idx])


class RewardModel:
    """The ensemble, its optimiser, its adaptive ℓ2 coefficient and the generator its bootstraps draw from."""

    def __init__(self, in_dim: int, *, members: int = 3, hidden: list[int] | None = None, dropout: float = 0.0,
                 lr: float = 3e-4, l2: float = 1e-4, l2_target: str = "validation", adapt_l2: bool = True,
                 batch_size: int = 64, seed: int = 0, device: torch.device | str = "cpu") -> None:
        torch_state = torch.random.get_rng_state()
        torch.manual_seed(seed)  # the same initial members on every rank, whatever the global seed did before
        self.net = RewardEnsemble(in_dim, members, hidden or [64, 64], dropout).to(device)
        torch.random.set_rng_state(torch_state)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        self.l2, self.l2_target, self.adapt_l2 = l2, l2_target, adapt_l2
        self.batch_size = batch_size
        self.gen = torch.Generator()
        self.gen.manual_seed(seed + 7919)
        self.device = torch.device(device)

    def weight_norm(self) -> torch.Tensor:
        """Σ ||W||² over the members' weight matrices (biases and absorbing rewards are not penalised)."""
        return sum((p.pow(2).sum() for n, p in self.net.named_parameters() if n.endswith("weight")),
                   torch.zeros((), device=self.device))

    def member_loss(self, i: int, pairs: Pairs) -> torch.Tensor:
        member = self.net.members[i]
        absorbing = self.net.absorbing[i]

        def ret(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
            r = member(x).squeeze(-1)
            af = a.to(r.dtype)
            return (r * (1 - af) + (absorbing * af if self.net.use_absorbing else 0)).sum(-1)

        return bradley_terry_loss(ret(pairs.x1, pairs.a1), ret(pairs.x2, pairs.a2), pairs.mu1)

    @torch.no_grad()
    def evaluate(self, pairs: Pairs) -> tuple[float, float]:
        """(mean Bradley-Terry loss over members, accuracy of the normalised ensemble on the strict labels)."""
        if len(pairs) == 0:
            return float("nan"), float("nan")
        self.net.eval()
        r1, r2 = self.net.segment_returns(pairs.x1, pairs.a1), self.net.segment_returns(pairs.x2, pairs.a2)
        loss = bradley_terry_loss(r1, r2, pairs.mu1.expand_as(r1)).item()
        n1 = ((r1 - self.net.mean[:, None]) / self.net.std[:, None]).mean(0)  # k·mean cancels in the difference
        n2 = ((r2 - self.net.mean[:, None]) / self.net.std[:, None]).mean(0)
        strict = pairs.mu1 != 0.5
        acc = ((n1 > n2).float() == pairs.mu1)[strict].float().mean().item() if strict.any() else float("nan")
        self.net.train()
        return loss, acc

    def fit(self, train: Pairs, val: Pairs, epochs: int) -> dict[str, float]:
        """``epochs`` passes, each member over its own bootstrap resample of ``train``; then adapt ℓ2."""
        n = len(train)
        self.net.train()
        for _ in range(epochs):
            boots = [torch.randint(n, (n,), generator=self.gen) for _ in self.net.members]
            for start in range(0, n, self.batch_size):
                loss = torch.zeros((), device=self.device)
                for i, idx in enumerate(boots):
                    loss = loss + self.member_loss(i, train.take(idx[start:start + self.batch_size].to(self.device)))
                loss = loss + self.l2 * self.weight_norm()
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.opt.step()
        train_loss, train_acc = self.evaluate(train)
        val_loss, val_acc = self.evaluate(val)
        if self.adapt_l2:
            self._adapt(train_loss, val_loss)
        return {"rm/train_loss": train_loss, "rm/val_loss": val_loss, "rm/accuracy": val_acc if len(val) else train_acc,
                "rm/train_accuracy": train_acc, "rm/l2": self.l2}

    def _adapt(self, train_loss: float, val_loss: float) -> None:
        if self.l2_target == "validation":
            if val_loss != val_loss:  # no validation pairs yet
                return
            ratio, low, high = val_loss / max(train_loss, 1e-8), 1.1, 1.5
        else:
            with torch.no_grad():
                reg = self.l2 * self.weight_norm().item() / len(self.net.members)
            ratio, low, high = reg / max(train_loss, 1e-8), 1.0, 1.5
            # the penalty itself scales with l2: move it toward the band
            if ratio > high:
                self.l2 /= 1.1
            elif ratio < low:
                self.l2 *= 1.1
            return
        if ratio > high:
            self.l2 *= 1.1  # overfitting: regularise more
        elif ratio < low:
            self.l2 /= 1.1

    @torch.no_grad()
    def rank_disagreement(self, x1: torch.Tensor, a1: torch.Tensor, x2: torch.Tensor,
                          a2: torch.Tensor) -> torch.Tensor:
        """Candidate pairs' indices, most disagreed-on first (fraction of members against the majority, then the
        variance of P̂ over members)."""
        self.net.eval()
        minority, var = disagreement(self.net.segment_returns(x1, a1), self.net.segment_returns(x2, a2))
        self.net.train()
        # lexicographic: minority first (multiples of 1/members), variance (< 1/4) breaks ties
        return torch.argsort(minority * 10 + var, descending=True, stable=True)

    def state_dict(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "opt": self.opt.state_dict(), "l2": self.l2,
                "gen": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.l2 = float(state["l2"])
        self.gen.set_state(state["gen"])
