"""REINFORCE's loss: equality with TorchRL's ``ReinforceLoss`` on the same batch, the
surrogate's gradient equals Σ_t ∇log π·Φ by hand (softmax and Gaussian), Φ is detached, the seeds' trajectory
normalisation, Monte-Carlo returns per option, and the optimal-baseline update through the module."""

from __future__ import annotations

import math

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import NormalParamExtractor, TensorDictModule
from torch import nn
from torchrl.modules import IndependentNormal, ProbabilisticActor
from torchrl.objectives import ReinforceLoss

from lrl.algos.reinforce.loss import linear_surrogate
from lrl.algos.reinforce.module import Reinforce
from lrl.data.collector import VecEnvCollector
from lrl.data.env import make_vec_env, probe_env_spec
from lrl.estimators import episode_index, optimal_baseline, reward_to_go
from lrl.estimators.losses import masked_value_loss, policy_gradient_loss
from lrl.estimators.monte_carlo import monte_carlo_returns
from lrl.recipe.schema import EnvConfig


def test_equals_torchrl_reinforce_loss_on_the_same_batch() -> None:
    """With a per-step mean (``normalization: step``) both losses are −mean(log π · A) and mean((V − G)²); the seeds'
    trajectory normalisation is the same sum divided by the number of trajectories instead."""
    torch.manual_seed(0)
    obs_dim, act_dim, n = 4, 2, 48
    actor_net = nn.Sequential(nn.Linear(obs_dim, 2 * act_dim), NormalParamExtractor())
    actor = ProbabilisticActor(TensorDictModule(actor_net, ["observation"], ["loc", "scale"]),
                               in_keys=["loc", "scale"], distribution_class=IndependentNormal)
    critic_net = nn.Linear(obs_dim, 1)
    critic = TensorDictModule(critic_net, ["observation"], ["state_value"])
    obs, action = torch.randn(n, obs_dim), torch.randn(n, act_dim)
    adv, target = torch.randn(n), torch.randn(n)
    td = TensorDict({"observation": obs, "action": action, "advantage": adv[:, None],
                     "value_target": target[:, None]}, [n])
    theirs = ReinforceLoss(actor, critic, loss_critic_type="l2")(td)
    loc, scale = actor_net(obs)
    logp = torch.distributions.Normal(loc, scale).log_prob(action).sum(-1)
    mask = torch.ones(n)
    torch.testing.assert_close(policy_gradient_loss(logp, adv, mask, n), theirs["loss_actor"])
    torch.testing.assert_close(masked_value_loss(critic_net(obs).squeeze(-1), target, mask, n), theirs["loss_value"])
    trajectories = 5
    torch.testing.assert_close(policy_gradient_loss(logp, adv, mask, trajectories),
                               theirs["loss_actor"] * n / trajectories)


def test_surrogate_gradient_equals_sum_of_score_times_phi_by_hand_softmax() -> None:
    """Linear softmax policy: ∇_θ log π(a|s) = s ⊗ (e_a − π(·|s)). Two trajectories (3 and 2 steps) plus one
    padding step; ĝ = (1/2) Σ_τ Σ_t s_t ⊗ (e_{a_t} − π_t) Φ_t (Rossi eq. 3.9)."""
    g = torch.Generator().manual_seed(1)
    theta = torch.randn(3, 4, generator=g, requires_grad=True)
    s, a = torch.randn(6, 3, generator=g), torch.tensor([0, 3, 1, 2, 2, 0])
    phi = torch.randn(6, generator=g)
    mask = torch.tensor([1, 1, 1, 1, 1, 0.0])
    logp = torch.log_softmax(s @ theta, -1).gather(-1, a[:, None]).squeeze(-1)
    (grad,) = torch.autograd.grad(-policy_gradient_loss(logp, phi, mask, 2), theta)
    pi = torch.softmax(s @ theta, -1).detach()
    by_hand = sum(torch.outer(s[t], torch.eye(4)[a[t]] - pi[t]) * phi[t] for t in range(5)) / 2
    torch.testing.assert_close(grad, by_hand)  # type: ignore[arg-type]


def test_surrogate_gradient_gaussian_mean_by_hand() -> None:
    """∇_μ log N(a; μ, σ) = (a − μ)/σ²."""
    mu = torch.tensor([0.3, -0.2], requires_grad=True)
    a, sigma, phi = torch.tensor([[1.0, 0.5], [-0.4, 0.1]]), 0.7, torch.tensor([2.0, -1.0])
    logp = torch.distributions.Normal(mu, sigma).log_prob(a).sum(-1)
    (grad,) = torch.autograd.grad(-policy_gradient_loss(logp, phi, torch.ones(2), 1), mu)
    torch.testing.assert_close(grad, ((a - mu.detach()) / sigma**2 * phi[:, None]).sum(0))


def test_phi_is_detached() -> None:
    logp = torch.randn(4, requires_grad=True)
    phi = torch.randn(4, requires_grad=True)
    policy_gradient_loss(logp, phi, torch.ones(4), 1).backward()
    assert phi.grad is None and logp.grad is not None


def test_monte_carlo_returns_options() -> None:
    reward = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]])
    done = torch.tensor([[False, False, True, False, True]])
    gamma = 0.5
    rtg, target, scale = monte_carlo_returns(reward, done, gamma, returns="reward_to_go", discounting="relative")
    torch.testing.assert_close(rtg, torch.tensor([[1 + 1 + 0.75, 2 + 1.5, 3.0, 4 + 2.5, 5.0]]))
    torch.testing.assert_close(target, rtg)
    assert torch.equal(scale, torch.ones_like(scale))
    ab, target_ab, scale_ab = monte_carlo_returns(reward, done, gamma, returns="reward_to_go",
                                                  discounting="absolute")
    torch.testing.assert_close(ab, rtg * torch.tensor([[1, 0.5, 0.25, 1, 0.5]]))  # γ^k, k within the episode
    torch.testing.assert_close(target_ab, rtg)  # V regresses on the relative return either way
    torch.testing.assert_close(scale_ab, torch.tensor([[1, 0.5, 0.25, 1, 0.5]]))
    ep, _, _ = monte_carlo_returns(reward, done, gamma, returns="episode", discounting="relative")
    torch.testing.assert_close(ep, torch.tensor([[2.75, 2.75, 2.75, 6.5, 6.5]]))


def test_linear_surrogate_has_gradient_minus_g() -> None:
    p = [torch.randn(3, 2, requires_grad=True), torch.randn(4, requires_grad=True)]
    g = [torch.randn(3, 2), torch.randn(4)]
    grads = torch.autograd.grad(linear_surrogate(p, g), p)
    for got, want in zip(grads, g, strict=True):
        torch.testing.assert_close(got, -want)


def _rollout(module: Reinforce, n: int = 3, share: int = 30) -> TensorDict:
    cfg = EnvConfig(id="CartPole-v1", num_envs=n)
    spec = probe_env_spec(cfg)
    c = VecEnvCollector(make_vec_env(cfg, n), spec, module.collection_policy(), steps_per_env=share,
                        env_seeds=list(range(n)), complete_episodes=True)
    return c.rollout()


def _module(**kw: object) -> Reinforce:
    torch.manual_seed(0)
    return Reinforce(probe_env_spec(EnvConfig(id="CartPole-v1")), hidden=[8], **kw)  # type: ignore[arg-type]


def test_module_gradient_is_the_mean_over_trajectories_of_summed_scores() -> None:
    """process_rollout + the policy loss give (1/N) Σ_τ Σ_t ∇log π(a_t|s_t) G_t, computed episode by episode."""
    m = _module(gamma=0.9)
    td = m.process_rollout(_rollout(m))
    flat = td.reshape(-1)
    mask = flat["mask"].float()
    loss, _, _ = m._policy_loss(flat["observation"], flat["action"], flat["phi"], mask, m._scale)
    params = list(m.policy.parameters())
    got = torch.autograd.grad(-loss, params)
    done = td["next", "done"].squeeze(-1)
    g_rtg = reward_to_go(td["next", "reward"].squeeze(-1), done, 0.9)
    episodes = episode_index(done.reshape(-1), flat["mask"])
    n_ep = int((done & td["mask"]).sum())
    expected = [torch.zeros_like(p) for p in params]
    for e in range(n_ep):
        steps = (episodes == e) & flat["mask"]
        logp = m.policy.head.log_prob(m.policy(flat["observation"][steps]), flat["action"][steps])
        for acc, gr in zip(expected, torch.autograd.grad((logp * g_rtg.reshape(-1)[steps]).sum(), params),
                           strict=True):
            acc += gr / n_ep
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_module_optimal_baseline_update_by_hand() -> None:
    """baseline=optimal: the applied gradient is (1/N) Σ_i (X_i − b* ⊙ Y_i), b* = Σ X⊙Y / Σ Y², with X_i, Y_i from
    per-episode autograd (Yin §4.3.2)."""
    m = _module(baseline="optimal", gamma=0.95)
    td = m.process_rollout(_rollout(m))
    flat = td.reshape(-1)
    loss = m._optimal_baseline_loss(flat, flat["mask"].float())
    params = list(m.policy.parameters())
    got = torch.cat([g.reshape(-1) for g in torch.autograd.grad(-loss, params)])
    xs, ys = [], []
    for e in range(m._num_episodes):
        steps = (flat["episode"] == e) & flat["mask"]
        logp = m.policy.head.log_prob(m.policy(flat["observation"][steps]), flat["action"][steps])
        y = torch.autograd.grad(logp.sum(), params, retain_graph=True)
        x = torch.autograd.grad((logp * flat["phi"][steps]).sum(), params)
        ys.append(torch.cat([t.reshape(-1) for t in y]))
        xs.append(torch.cat([t.reshape(-1) for t in x]))
    x_all, y_all = torch.stack(xs), torch.stack(ys)
    b = optimal_baseline(x_all, y_all)
    torch.testing.assert_close(got, (x_all - b * y_all).mean(0), atol=1e-5, rtol=1e-4)
    assert not math.isclose(b.abs().sum().item(), 0.0)


def test_bad_combination_is_one_clear_error() -> None:
    from lrl.errors import RecipeError

    with pytest.raises(RecipeError) as err:
        _module(baseline="optimal", normalize_advantage=True)
    assert "normalize_advantage=false" in err.value.message and "\n" not in err.value.message
