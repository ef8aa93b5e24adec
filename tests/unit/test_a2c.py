"""A2C's maths (Rossi §3.4–3.6, eq. 3.31–3.33, Alg. 3.3): the policy-gradient surrogate against
the closed-form softmax gradient, detached advantages and critic targets, the advantage / target modes of
``process_rollout`` against hand computations and a slow n-step reference loop, lower variance than REINFORCE with
a perfect critic, the critic regression's descent direction, the optimiser's parameter groups, and equality with
TorchRL's ``A2CLoss`` (with TorchRL's own TD(0) / TD(1) / GAE estimators) on the same rollout."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.modules import IndependentNormal, ProbabilisticActor
from torchrl.objectives import A2CLoss, ValueEstimators

from lrl.algos.a2c.loss import a2c_loss, policy_gradient_loss
from lrl.algos.a2c.module import A2C
from lrl.contract import Schedule, schedule_of
from lrl.errors import RecipeError
from lrl.estimators.losses import value_loss
from lrl.recipe import load
from lrl.spec import EnvSpec

DISCRETE = EnvSpec("test-discrete", (4,), "discrete", 3)
CONTINUOUS = EnvSpec("test-continuous", (3,), "continuous", 2, (-1.0, -1.0), (1.0, 1.0))


def _rollout(spec: EnvSpec, n: int = 3, t: int = 7, seed: int = 0) -> TensorDict:
    """A rollout in the collector's layout ``[num_envs, T]`` with terminations and truncations inside it."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, t, spec.obs_dim, generator=g)
    next_obs = torch.randn(n, t, spec.obs_dim, generator=g)
    terminated = torch.rand(n, t, 1, generator=g) < 0.2
    truncated = (torch.rand(n, t, 1, generator=g) < 0.15) & ~terminated
    done = terminated | truncated
    next_obs[:, :-1] = torch.where(done[:, :-1], next_obs[:, :-1], obs[:, 1:])  # s' is the next step's s
    if spec.action_kind == "discrete":
        action = torch.randint(0, spec.action_dim, (n, t), generator=g)
    else:
        action = torch.randn(n, t, spec.action_dim, generator=g)
    return TensorDict({"observation": obs, "action": action,
                       "next": {"observation": next_obs, "reward": torch.randn(n, t, 1, generator=g),
                                "terminated": terminated, "truncated": truncated, "done": done}}, [n, t])


def _module(spec: EnvSpec = DISCRETE, **kw: object) -> A2C:
    torch.manual_seed(0)
    return A2C(spec, **kw)  # type: ignore[arg-type]


# --- the loss ---------------------------------------------------------------------------------------------------
def test_policy_gradient_loss_gradient_is_the_softmax_score_times_advantage() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 4, generator=g, requires_grad=True)
    action = torch.randint(0, 4, (6,), generator=g)
    adv = torch.randn(6, generator=g)
    logp = torch.log_softmax(logits, -1).gather(-1, action[:, None]).squeeze(-1)
    policy_gradient_loss(logp, adv).backward()
    # ∇_logits log softmax(z)_a = onehot(a) − softmax(z); the loss is −mean(log π · Â)
    score = nn.functional.one_hot(action, 4).float() - torch.softmax(logits.detach(), -1)
    torch.testing.assert_close(logits.grad, -(score * adv[:, None]) / 6)


def test_advantage_is_detached_so_the_actor_loss_does_not_train_the_critic() -> None:
    module = _module()
    obs = torch.randn(8, 4)
    params = module.net.policy_params(obs)
    logp = module.net.head.log_prob(params, torch.randint(0, 3, (8,)))
    adv = torch.randn(8) - module.net.value(obs)  # an advantage built from the critic, with a graph
    policy_gradient_loss(logp, adv).backward()
    assert all(p.grad is None for p in module.net.critic_body.parameters())
    assert all(p.grad is None for p in module.net.value_out.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.net.actor_body.parameters())


def test_critic_target_is_a_constant_semi_gradient() -> None:
    """eq. 3.31 bootstrapping: y = r + γV_ψ(s') is held constant, so ∇L = 2 mean((V(s) − y)∇V(s)) only."""
    module = _module()
    obs, next_obs, r = torch.randn(5, 4), torch.randn(5, 4), torch.randn(5)
    v = module.net.value(obs)
    y = r + 0.9 * module.net.value(next_obs)  # depends on ψ: a2c_loss must not differentiate through it
    out = a2c_loss(torch.zeros(5, requires_grad=True), torch.zeros(5), torch.zeros(5), v, y, vf_coef=1.0,
                   ent_coef=0.0)
    grads = torch.autograd.grad(out["loss"], list(module.net.value_out.parameters()))
    v2 = module.net.value(obs)
    expected = torch.autograd.grad((2 * (v.detach() - y.detach()) * v2).mean(), list(module.net.value_out.parameters()))
    for a, b in zip(grads, expected, strict=True):
        torch.testing.assert_close(a, b)


def test_total_loss_combines_terms_with_their_coefficients() -> None:
    logp, adv, ent = torch.tensor([-0.5, -1.0]), torch.tensor([2.0, -1.0]), torch.tensor([0.7, 0.3])
    v, y = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    out = a2c_loss(logp, adv, ent, v, y, vf_coef=0.25, ent_coef=0.1)
    policy = -(-0.5 * 2.0 + -1.0 * -1.0) / 2  # = 0
    critic = (1.0 + 4.0) / 2
    assert out["policy"].item() == pytest.approx(policy)
    assert out["value"].item() == pytest.approx(critic)
    assert out["loss"].item() == pytest.approx(policy + 0.25 * critic - 0.1 * 0.5)


def test_lower_variance_than_reinforce_with_a_perfect_critic_and_same_mean() -> None:
    """With V = E_π[r] as baseline the estimator keeps its mean and loses variance."""
    theta = torch.tensor([0.3, -0.2, 0.1])
    reward = torch.tensor([1.0, 2.0, 5.0])
    pi = torch.softmax(theta, -1)
    exact = pi * (reward - (pi * reward).sum())  # ∇_θ Σ_a π(a) r(a)
    g = torch.Generator().manual_seed(0)
    a = torch.multinomial(pi, 40_000, replacement=True, generator=g)
    r = reward[a] + 0.5 * torch.randn(a.shape, generator=g)

    def per_sample(th: torch.Tensor, onehot: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
        logp = (torch.log_softmax(th, -1) * onehot).sum(-1)
        return -policy_gradient_loss(logp[None], phi[None])  # ascent direction ĝ

    grads = torch.func.vmap(torch.func.grad(per_sample), in_dims=(None, 0, 0))
    onehot = nn.functional.one_hot(a, 3).float()
    g_reinforce = grads(theta, onehot, r)
    g_a2c = grads(theta, onehot, r - (pi * reward).sum())
    torch.testing.assert_close(g_reinforce.mean(0), exact, atol=0.03, rtol=0)  # ~4 standard errors
    torch.testing.assert_close(g_a2c.mean(0), exact, atol=0.015, rtol=0)
    assert g_a2c.var(0).sum() < 0.25 * g_reinforce.var(0).sum()


def test_critic_regression_descends_to_the_targets() -> None:
    """Alg. 3.3's critic fit (with the seed's sign typo corrected): the loss goes to zero."""
    spec = EnvSpec("tabular", (4,), "discrete", 2)
    module = _module(spec, hidden=[], optimizer="adam", lr=0.05)
    obs = torch.eye(4)
    target = torch.tensor([1.0, -2.0, 0.5, 3.0])
    opt = torch.optim.Adam(module.net.value_out.parameters(), lr=0.05)
    for _ in range(600):
        opt.zero_grad()
        value_loss(module.net.value(obs), target).backward()
        opt.step()
    torch.testing.assert_close(module.net.value(obs).detach(), target, atol=1e-3, rtol=0)


# --- advantages and critic targets (process_rollout) ---------------------------------------------------------------
def _values(module: A2C, td: TensorDict) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return module.net.value(td["observation"]), module.net.value(td["next", "observation"])


def test_lambda_zero_is_the_td_error_and_the_bootstrapped_target() -> None:
    module = _module(gamma=0.9, gae_lambda=0.0)
    td = _rollout(DISCRETE)
    v, v_next = _values(module, td)
    out = module.process_rollout(td.clone())
    r, term = td["next", "reward"].squeeze(-1), td["next", "terminated"].squeeze(-1).float()
    y = r + 0.9 * (1 - term) * v_next  # eq. 3.31 (bootstrapping), no bootstrap through a termination
    torch.testing.assert_close(out["value_target"], y)
    torch.testing.assert_close(out["advantage"], y - v)  # eq. 3.33


def _n_step_reference(td: TensorDict, v: torch.Tensor, v_next: torch.Tensor, gamma: float) -> torch.Tensor:
    """Σ_{l=t}^{t+k−1} γ^{l−t} r_l + γ^k V(s_{t+k}) with k to the episode or rollout end (eq. 3.28/3.32), by hand."""
    r = td["next", "reward"].squeeze(-1)
    term, trunc = td["next", "terminated"].squeeze(-1), td["next", "truncated"].squeeze(-1)
    n, t = r.shape
    out = torch.zeros(n, t)
    for i in range(n):
        for s in range(t):
            total, w = 0.0, 1.0
            for k in range(s, t):
                total += w * r[i, k].item()
                if term[i, k]:
                    break  # the episode ended: its future is worth 0
                if trunc[i, k] or k == t - 1:
                    total += w * gamma * v_next[i, k].item()  # time limit or rollout end: bootstrap
                    break
                w *= gamma
            out[i, s] = total
    return out


def test_lambda_one_is_the_bootstrapped_n_step_return_minus_value() -> None:
    module = _module(gamma=0.95, gae_lambda=1.0)
    td = _rollout(DISCRETE, n=4, t=9, seed=1)
    v, v_next = _values(module, td)
    out = module.process_rollout(td.clone())
    ref = _n_step_reference(td, v, v_next, 0.95)
    torch.testing.assert_close(out["value_target"], ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["advantage"], ref - v, atol=1e-5, rtol=1e-5)


def test_critic_lambda_sets_the_target_independently_of_the_advantage() -> None:
    module = _module(gamma=0.95, gae_lambda=0.0, critic_lambda=1.0)
    td = _rollout(DISCRETE, seed=2)
    v, v_next = _values(module, td)
    out = module.process_rollout(td.clone())
    r, term = td["next", "reward"].squeeze(-1), td["next", "terminated"].squeeze(-1).float()
    torch.testing.assert_close(out["advantage"], r + 0.95 * (1 - term) * v_next - v)
    torch.testing.assert_close(out["value_target"], _n_step_reference(td, v, v_next, 0.95), atol=1e-5, rtol=1e-5)


def test_truncation_bootstraps_and_termination_does_not() -> None:
    module = _module(gamma=0.5, gae_lambda=1.0)
    td = _rollout(DISCRETE, n=2, t=1, seed=3)
    td["next", "reward"] = torch.ones(2, 1, 1)
    td["next", "terminated"] = torch.tensor([[[True]], [[False]]])
    td["next", "truncated"] = torch.tensor([[[False]], [[True]]])
    td["next", "done"] = torch.ones(2, 1, 1, dtype=torch.bool)
    _, v_next = _values(module, td)
    out = module.process_rollout(td.clone())
    assert out["value_target"][0, 0].item() == 1.0
    assert out["value_target"][1, 0].item() == pytest.approx(1.0 + 0.5 * v_next[1, 0].item())


# --- optimiser -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shared", [False, True])
def test_actor_and_critic_step_sizes(shared: bool) -> None:
    module = _module(shared=shared, lr=1e-3, critic_lr=5e-3)
    actor, critic = module._param_groups()
    all_ids = [id(p) for p in module.net.parameters()]
    assert sorted(all_ids) == sorted(id(p) for p in actor + critic)  # every parameter exactly once
    critic_ids = {id(p) for p in critic}
    assert {id(p) for p in module.net.value_out.parameters()} <= critic_ids
    assert {id(p) for p in module.net.head.parameters()}.isdisjoint(critic_ids)
    body = {id(p) for p in module.net.critic_body.parameters()}
    assert body <= critic_ids if not shared else body.isdisjoint(critic_ids)  # shared body: the actor's lr
    assert module._base_lrs() == (1e-3, 5e-3)


@pytest.mark.parametrize(("override", "message"), [("algo.minibatch_size=20", "unknown key for A2C"),
                                                    ("algo.epochs=2", "unknown key for A2C"),
                                                    ("data.epochs=2", "write it as algo.epochs")])
def test_one_whole_rollout_step_is_part_of_a2c_not_a_knob(override: str, message: str) -> None:
    """A2C declares one whole-rollout step per rollout (``consumes``): there is no schedule to set."""
    with pytest.raises(RecipeError, match=message):
        load("a2c/cartpole", [override])
    assert A2C.consumes.whole_rollout and A2C.consumes.single_pass
    assert schedule_of(load("a2c/cartpole").algo, A2C.consumes) == Schedule(1, None)


# --- TorchRL's A2CLoss on the same batch ---------------------------------------------------------------------------
def _torchrl_modules(module: A2C) -> tuple[ProbabilisticActor, TensorDictModule]:
    net = module.net
    if module.spec.action_kind == "discrete":
        logits = TensorDictModule(lambda obs: net.policy_params(obs)[0], ["observation"], ["logits"])
        actor = ProbabilisticActor(logits, in_keys=["logits"], distribution_class=torch.distributions.Categorical)
    else:
        loc_scale = TensorDictModule(nn.Sequential(net.actor_body, _LocScale(net)), ["observation"], ["loc", "scale"])
        actor = ProbabilisticActor(loc_scale, in_keys=["loc", "scale"], distribution_class=IndependentNormal)
    critic = TensorDictModule(lambda obs: net.value(obs).unsqueeze(-1), ["observation"], ["state_value"])
    return actor, critic


class _LocScale(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.head = net.head  # type: ignore[union-attr]

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.head(features)
        return mean, log_std.exp()


@pytest.mark.parametrize("spec", [DISCRETE, CONTINUOUS], ids=["categorical", "gaussian"])
def test_equals_torchrl_a2c_loss_given_advantages(spec: EnvSpec) -> None:
    module = _module(spec, ent_coef=0.01, vf_coef=0.5)
    td = _rollout(spec, n=4, t=8, seed=4).reshape(-1)
    g = torch.Generator().manual_seed(5)
    td["advantage"] = torch.randn(td.shape[0], 1, generator=g)
    td["value_target"] = torch.randn(td.shape[0], 1, generator=g)
    actor, critic = _torchrl_modules(module)
    theirs = A2CLoss(actor, critic, entropy_coeff=0.01, critic_coeff=0.5, loss_critic_type="l2",
                     functional=False)(td)
    ours = module._compute_loss(td["observation"], td["action"], td["advantage"].squeeze(-1),
                                td["value_target"].squeeze(-1))
    torch.testing.assert_close(ours["policy"], theirs["loss_objective"])
    torch.testing.assert_close(0.5 * ours["value"], theirs["loss_critic"])
    torch.testing.assert_close(-0.01 * ours["entropy"], theirs["loss_entropy"])
    total = theirs["loss_objective"] + theirs["loss_critic"] + theirs["loss_entropy"]
    torch.testing.assert_close(ours["loss"], total)


@pytest.mark.parametrize(("lam", "estimator"), [(0.0, ValueEstimators.TD0), (1.0, ValueEstimators.TD1),
                                                (0.9, ValueEstimators.GAE)])
def test_equals_torchrl_a2c_loss_with_its_own_advantage_estimator(lam: float, estimator: ValueEstimators) -> None:
    """The whole update target: our process_rollout + loss vs TorchRL computing advantages and targets itself."""
    module = _module(DISCRETE, gamma=0.97, gae_lambda=lam, ent_coef=0.0)
    td = _rollout(DISCRETE, n=3, t=10, seed=6)
    actor, critic = _torchrl_modules(module)
    loss = A2CLoss(actor, critic, entropy_bonus=False, critic_coeff=1.0, loss_critic_type="l2", functional=False)
    kwargs = {"gamma": 0.97} if estimator is not ValueEstimators.GAE else {"gamma": 0.97, "lmbda": lam}
    loss.make_value_estimator(estimator, **kwargs)
    theirs = loss(td.clone())
    flat = module.process_rollout(td.clone()).reshape(-1)
    ours = module._compute_loss(flat["observation"], flat["action"], flat["advantage"], flat["value_target"])
    torch.testing.assert_close(ours["policy"], theirs["loss_objective"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours["value"], theirs["loss_critic"], atol=1e-5, rtol=1e-5)
