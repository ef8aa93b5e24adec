"""PPO's losses: the clip table, the θ'=θ identities, KL̂, and equality with TorchRL's ClipPPOLoss
(Schulman et al. 2017)."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import NormalParamExtractor, TensorDictModule
from torch import nn
from torchrl.modules import IndependentNormal, ProbabilisticActor
from torchrl.objectives import ClipPPOLoss

from lrl.algos.ppo.loss import approx_kl, clipped_surrogate, ppo_loss
from lrl.estimators.losses import value_loss


@pytest.mark.parametrize(
    ("ratio", "adv", "value", "has_grad"),
    [(1.5, 1.0, 1.2, False), (0.5, 1.0, 0.5, True), (0.5, -1.0, -0.8, False), (1.5, -1.0, -1.5, True)],
)
def test_clip_table(ratio: float, adv: float, value: float, has_grad: bool) -> None:
    logp = torch.tensor([torch.log(torch.tensor(ratio)).item()], requires_grad=True)
    surrogate, _ = clipped_surrogate(logp, torch.zeros(1), torch.tensor([adv]), 0.2)
    assert surrogate.item() == pytest.approx(value, abs=1e-6)
    surrogate.backward()
    assert (logp.grad.abs().item() > 0) == has_grad  # type: ignore[union-attr]


def test_at_old_policy_surrogate_is_mean_advantage_and_gradient_is_vanilla_pg() -> None:
    g = torch.Generator().manual_seed(0)
    theta = torch.randn(5, 3, generator=g, requires_grad=True)
    actions = torch.randint(0, 3, (5,), generator=g)
    adv = torch.randn(5, generator=g)
    logp = torch.log_softmax(theta, -1).gather(-1, actions[:, None]).squeeze(-1)
    surrogate, frac = clipped_surrogate(logp, logp.detach(), adv, 0.2)
    assert surrogate.item() == pytest.approx(adv.mean().item(), abs=1e-6)
    assert frac.item() == 0.0
    (grad_clip,) = torch.autograd.grad(surrogate, theta, retain_graph=True)
    (grad_pg,) = torch.autograd.grad((logp * adv).mean(), theta)
    torch.testing.assert_close(grad_clip, grad_pg)


def test_clipped_is_a_lower_bound_of_the_is_surrogate() -> None:
    g = torch.Generator().manual_seed(1)
    logp, old = torch.randn(1000, generator=g) * 0.5, torch.zeros(1000)
    adv = torch.randn(1000, generator=g)
    ratio = torch.exp(logp - old)
    for i in range(1000):
        s, _ = clipped_surrogate(logp[i : i + 1], old[i : i + 1], adv[i : i + 1], 0.2)
        assert s.item() <= (ratio[i] * adv[i]).item() + 1e-6


def test_approx_kl_zero_at_start_and_unbiased_for_categorical() -> None:
    logp = torch.log(torch.tensor([0.2, 0.5, 0.3]))
    assert approx_kl(logp, logp).item() == 0.0
    old = torch.tensor([0.2, 0.5, 0.3])
    new = torch.tensor([0.4, 0.3, 0.3])
    g = torch.Generator().manual_seed(2)
    a = torch.multinomial(old, 200_000, replacement=True, generator=g)
    estimate = approx_kl(new.log()[a], old.log()[a]).item()
    exact = (old * (old.log() - new.log())).sum().item()
    assert estimate == pytest.approx(exact, abs=3e-3)


def test_value_clipping() -> None:
    v, target, old = torch.tensor([2.0]), torch.tensor([0.0]), torch.tensor([1.0])
    assert value_loss(v, target).item() == 4.0
    # clipped prediction is 1.2, error 1.44 < 4: the max keeps the unclipped error
    assert value_loss(v, target, old, 0.2).item() == pytest.approx(4.0)
    v2 = torch.tensor([0.5])  # moves towards the target by more than 0.2: the clipped error 0.64 is larger
    assert value_loss(v2, target, old, 0.2).item() == pytest.approx(0.64)


def test_equals_torchrl_clip_ppo_loss_gaussian() -> None:
    torch.manual_seed(3)
    obs_dim, act_dim, n = 4, 2, 64
    actor_net = nn.Sequential(nn.Linear(obs_dim, 2 * act_dim), NormalParamExtractor())
    actor = ProbabilisticActor(TensorDictModule(actor_net, ["observation"], ["loc", "scale"]),
                               in_keys=["loc", "scale"], distribution_class=IndependentNormal,
                               return_log_prob=True)
    critic_net = nn.Linear(obs_dim, 1)
    critic = TensorDictModule(critic_net, ["observation"], ["state_value"])
    obs = torch.randn(n, obs_dim)
    with torch.no_grad():
        loc, scale = actor_net(obs)
        action = loc + scale * torch.randn(n, act_dim)
        old_logp = torch.distributions.Normal(loc, scale).log_prob(action).sum(-1) + 0.1 * torch.randn(n)
    adv, target = torch.randn(n), torch.randn(n)
    td = TensorDict({"observation": obs, "action": action, "sample_log_prob": old_logp, "action_log_prob": old_logp,
                     "advantage": adv[:, None], "value_target": target[:, None]}, [n])
    theirs = ClipPPOLoss(actor, critic, clip_epsilon=0.2, entropy_bonus=False, critic_coeff=0.5,
                         loss_critic_type="l2", normalize_advantage=False)(td)
    loc, scale = actor_net(obs)
    logp = torch.distributions.Normal(loc, scale).log_prob(action).sum(-1)
    ours = ppo_loss(logp, old_logp, adv, torch.zeros(n), critic_net(obs).squeeze(-1), target, target,
                    clip_range=0.2, clip_range_vf=None, vf_coef=0.5, ent_coef=0.0)
    torch.testing.assert_close(ours["policy"], theirs["loss_objective"])
    torch.testing.assert_close(0.5 * ours["value"], theirs["loss_critic"])
