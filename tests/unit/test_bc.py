"""Behavioural cloning (Rossi §13.1, §13.3, eq. 13.1–13.5; Yin §2.1): the losses against torch's own and hand
formulas, BC's gradient against the policy gradient with Φ ≡ 1, recovery of a noiseless linear expert, the
compounding-error inequality, one ``training_step`` against a hand-written update, and ``algo.init_from``'s pieces
(the policy's structure and state, the refusals ``lrl validate`` makes from the recipe alone).
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tensordict import TensorDict
from torch import Tensor

from lrl.algos.bc.loss import bc_loss, discrete_bc_loss, gaussian_nll_bc_loss, l2_penalty, mse_bc_loss
from lrl.algos.bc.module import BC
from lrl.algos.offpg.module import OffPolicyPG
from lrl.algos.ppo.module import PPO
from lrl.errors import RecipeError
from lrl.estimators import policy_gradient_loss
from lrl.networks import ActorCritic, PolicyNet
from lrl.recipe import load
from lrl.spec import Spec
from tests.bc_helpers import cartpole_controller
from tests.unit.test_wiring import LOG_2PI, adam, assert_grads, assert_params, attach, automatic_step, params_of

DISCRETE = Spec("Toy-v0", (4,), "discrete", 3)
CONTINUOUS = Spec("Toy-v0", (3,), "continuous", 2, (-2.0, -1.0), (2.0, 1.0))
GOAL = Spec("ToyGoal-v0", (3,), "continuous", 2, (-1.0, -1.0), (1.0, 1.0), obs_kind="goal", goal_shape=(2,))


def _grads(loss: Tensor, params: list[Tensor]) -> list[Tensor]:
    return list(torch.autograd.grad(loss, params))


# --- the losses -------------------------------------------------------------------------------------------------
def test_discrete_loss_is_cross_entropy() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 4, generator=g)
    action = torch.randint(4, (7,), generator=g)
    got = discrete_bc_loss(torch.log_softmax(logits, -1), action)
    torch.testing.assert_close(got, F.cross_entropy(logits, action))
    rows, labels = logits.tolist(), action.tolist()
    hand = -sum(math.log(math.exp(r[a]) / sum(math.exp(v) for v in r)) for r, a in zip(rows, labels, strict=True)) / 7
    assert got.item() == pytest.approx(hand, rel=1e-5)


def test_mse_loss_is_the_squared_error_summed_over_action_dimensions() -> None:
    mean = torch.tensor([[0.5, -1.0], [2.0, 0.0], [0.0, 0.25]])
    action = torch.tensor([[0.0, 1.0], [2.0, 1.0], [-1.0, 0.25]])
    hand = ((0.25 + 4.0) + (0.0 + 1.0) + (1.0 + 0.0)) / 3  # Σ_d (μ_d − a_d)², mean over the 3 samples
    assert mse_bc_loss(mean, action).item() == pytest.approx(hand)
    torch.testing.assert_close(mse_bc_loss(mean, action), 2 * F.mse_loss(mean, action))  # F averages over D too


def test_gaussian_nll_loss_is_torchs() -> None:
    g = torch.Generator().manual_seed(1)
    mean, action = torch.randn(9, 3, generator=g), torch.randn(9, 3, generator=g)
    log_std = torch.tensor([-0.5, 0.0, 0.7]).expand(9, 3)
    got = gaussian_nll_bc_loss(mean, log_std, action)
    want = F.gaussian_nll_loss(mean, action, (2 * log_std).exp(), full=True, reduction="sum") / 9
    torch.testing.assert_close(got, want)
    std = log_std.exp()
    hand = (0.5 * ((action - mean) / std) ** 2 + std.log() + 0.5 * LOG_2PI).sum() / 9
    torch.testing.assert_close(got, hand)


def test_l2_penalty_and_the_total() -> None:
    w = [torch.tensor([[1.0, -2.0]]), torch.tensor([3.0])]
    assert l2_penalty(w).item() == pytest.approx(1 + 4 + 9)
    total = bc_loss(torch.tensor(2.0), torch.tensor(0.5), torch.tensor(14.0), ent_coef=0.1, l2_coef=0.01)
    assert total.item() == pytest.approx(2.0 - 0.05 + 0.14)


# --- BC and the policy gradient (Rossi eq. 13.1–13.4) ------------------------------------------------------------
def test_bc_gradient_is_minus_the_policy_gradient_with_phi_one() -> None:
    """∇J_IL = −(1/N) Σ ∇log π(a*|s) (eq. 13.1) and ∇J_RL = (1/N) Σ ∇log π(a|s) Φ (eq. 13.2): with Φ ≡ 1 on the
    same network and data, the BC loss's gradient is minus the policy gradient."""
    torch.manual_seed(0)
    net = PolicyNet(DISCRETE, [8], "tanh")
    g = torch.Generator().manual_seed(2)
    obs, action = torch.randn(16, 4, generator=g), torch.randint(3, (16,), generator=g)
    params = list(net.parameters())
    bc_grad = _grads(discrete_bc_loss(net(obs)[0], action), params)
    logp = net.head.log_prob(net(obs), action)
    ones = torch.ones(16)
    j_rl = -policy_gradient_loss(logp, ones, ones, 16)  # lrl's surrogate is −J_RL (it is minimised)
    pg_grad = _grads(j_rl, params)
    for b, p in zip(bc_grad, pg_grad, strict=True):
        torch.testing.assert_close(b, -p)


def test_gaussian_policy_gradient_with_fixed_sigma_is_a_scaled_mse_gradient() -> None:
    """For a Gaussian with a fixed σ, log π(a|s) = −‖μ_θ(s) − a‖²/(2σ²) + const, so the policy gradient with Φ ≡ 1
    is −1/(2σ²) times the MSE gradient (eq. 13.3–13.5; the denominator is 2σ², not the printed 2πσ²)."""
    torch.manual_seed(0)
    sigma = 0.7
    net = PolicyNet(CONTINUOUS, [8], "tanh", log_std_init=math.log(sigma))
    g = torch.Generator().manual_seed(3)
    obs, action = torch.randn(16, 3, generator=g), torch.randn(16, 2, generator=g)
    params = [p for n, p in net.named_parameters() if n != "head.log_std"]
    j_rl = net.head.log_prob(net(obs), action).mean()  # (1/N) Σ log π Φ with Φ ≡ 1
    pg_grad = _grads(j_rl, params)
    mse_grad = _grads(mse_bc_loss(net(obs)[0], action), params)
    for pg, mse in zip(pg_grad, mse_grad, strict=True):
        torch.testing.assert_close(pg, -mse / (2 * sigma**2))


def test_bc_recovers_a_noiseless_linear_expert() -> None:
    """A linear policy (no hidden layer) cloned from a linear expert a = W s + b without noise converges to W, b."""
    torch.manual_seed(0)
    spec = Spec("Linear-v0", (3,), "continuous", 2, (-10.0, -10.0), (10.0, 10.0))
    w_true, b_true = torch.tensor([[1.0, -2.0, 0.5], [0.0, 0.3, -1.5]]), torch.tensor([0.2, -0.4])
    obs = torch.randn(256, 3, generator=torch.Generator().manual_seed(4))
    td = TensorDict({"observation": obs, "action": obs @ w_true.T + b_true}, [256])
    m = BC(spec, hidden=[], lr=0.05)
    (opt,) = attach(m)
    for _ in range(400):
        opt.zero_grad()
        m.losses(td)["loss"].backward()
        opt.step()
    torch.testing.assert_close(m.policy.head.linear.weight.detach(), w_true, atol=1e-3, rtol=0)
    torch.testing.assert_close(m.policy.head.linear.bias.detach(), b_true, atol=1e-3, rtol=0)


def test_compounding_error_bound() -> None:
    """Yin §2.1: |p_θ(s_t) − p_train(s_t)| ≤ 2(1 − (1−ε)^t) ≤ 2εt rests on (1−ε)^t ≥ 1 − εt (Bernoulli's
    inequality) for ε in [0, 1] and t ≥ 0."""
    eps = np.linspace(0.0, 1.0, 101)[:, None]
    t = np.arange(0, 200)[None, :]
    assert np.all((1 - eps) ** t >= 1 - eps * t - 1e-12)
    assert np.all(2 * (1 - (1 - eps) ** t) <= 2 * eps * t + 1e-12)


def test_scripted_cartpole_controller_is_an_expert() -> None:
    env = gym.make("CartPole-v1")
    for seed in range(2):
        obs, _ = env.reset(seed=seed)
        total, done = 0.0, False
        while not done:
            obs, reward, term, trunc, _ = env.step(int(cartpole_controller(obs)))
            total, done = total + float(reward), term or trunc
        assert total >= 450
    env.close()


# --- one training step against a hand-written update ----------------------------------------------------------------
def _demos(spec: Spec, n: int = 12, seed: int = 0) -> TensorDict:
    g = torch.Generator().manual_seed(seed)
    data: dict[str, Tensor] = {"observation": torch.randn(n, spec.obs_dim, generator=g)}
    if spec.action_kind == "discrete":
        data["action"] = torch.randint(spec.action_dim, (n,), generator=g)
    else:
        data["action"] = torch.rand(n, spec.action_dim, generator=g) * 2 - 1
    if spec.obs_kind == "goal":
        data["desired_goal"] = torch.randn(n, spec.goal_dim, generator=g)
        data["achieved_goal"] = torch.randn(n, spec.goal_dim, generator=g)
    return TensorDict(data, [n])


@pytest.mark.parametrize(("spec", "loss"), [(DISCRETE, "mse"), (CONTINUOUS, "mse"), (CONTINUOUS, "gaussian_nll"),
                                            (GOAL, "gaussian_nll")],
                         ids=["categorical", "gaussian-mse", "gaussian-nll", "goal-gaussian-nll"])
def test_training_step_matches_a_hand_written_update(spec: Spec, loss: str) -> None:
    """loss = L_fit − c_e H + c_2 Σ‖W‖² with L_fit = −mean log softmax(z)[a*] (discrete), mean Σ_d (μ_d − a*_d)²
    (mse) or mean Σ_d [(a*_d − μ_d)²/(2σ_d²) + log σ_d + ½ log 2π] (nll); the input is observation ++ desired goal for
    goal observations. Plain torch ops on a copy of the weights, one Adam step, then the same parameters."""
    torch.manual_seed(0)
    c_e = 0.0 if (spec.action_kind == "continuous" and loss == "mse") else 0.05
    c_2, lr = 0.01, 0.01
    m = BC(spec, hidden=[8], lr=lr, loss=loss, ent_coef=c_e, l2_coef=c_2, log_std_init=-0.3,  # type: ignore[arg-type]
           ortho_init=False)
    attach(m)
    p = params_of(m)
    td = _demos(spec)
    got, grads = automatic_step(m, td)

    x = td["observation"] if spec.obs_kind == "box" else torch.cat([td["observation"], td["desired_goal"]], -1)
    h = torch.tanh(F.linear(x, p["policy.body.0.weight"], p["policy.body.0.bias"]))
    z = F.linear(h, p["policy.head.linear.weight"], p["policy.head.linear.bias"])
    a = td["action"]
    if spec.action_kind == "discrete":
        logp = torch.log_softmax(z, -1)
        fit = -logp.gather(-1, a[:, None]).mean()
        ent = -(logp.exp() * logp).sum(-1).mean()
    else:
        log_std = p["policy.head.log_std"].expand_as(z)
        if loss == "mse":
            fit = ((z - a) ** 2).sum(-1).mean()
        else:
            fit = (0.5 * ((a - z) / log_std.exp()) ** 2 + log_std + 0.5 * LOG_2PI).sum(-1).mean()
        ent = (log_std + 0.5 * (LOG_2PI + 1)).sum(-1).mean()
    l2 = sum((p[k] ** 2).sum() for k in ("policy.body.0.weight", "policy.head.linear.weight"))
    expected = fit - c_e * ent + c_2 * l2
    torch.testing.assert_close(got, expected.detach())

    names = [k for k, v in p.items() if v.requires_grad]
    if spec.action_kind == "continuous" and loss == "mse":
        assert "policy.head.log_std" not in names  # no gradient reaches σ under mse: it is not trained
    ref = torch.autograd.grad(expected, [p[k] for k in names])
    assert_grads(grads, names, ref)
    opt = adam(p, names, lr, eps=1e-8)
    for k, gk in zip(names, ref, strict=True):
        p[k].grad = gk
    opt.step()
    assert_params(m, p)


def test_ent_coef_with_mse_on_continuous_actions_is_refused() -> None:
    with pytest.raises(RecipeError, match=r"algo\.ent_coef: under algo\.loss=mse"):
        BC(CONTINUOUS, ent_coef=0.1)
    BC(DISCRETE, ent_coef=0.1)  # the softmax's entropy depends on the logits: fine
    BC(CONTINUOUS, ent_coef=0.1, loss="gaussian_nll")


def test_act_is_the_mode() -> None:
    m = BC(CONTINUOUS, hidden=[8])
    obs = torch.randn(5, 3)
    torch.testing.assert_close(m.act(obs), m.policy(obs)[0])
    d = BC(DISCRETE, hidden=[8])
    torch.testing.assert_close(d.act(torch.randn(5, 4)).shape, torch.Size([5]))


# --- init_from: the policy as a unit -------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", [DISCRETE, CONTINUOUS], ids=["categorical", "gaussian"])
def test_a_bc_policy_loads_into_ppos_actor_critic(spec: Spec) -> None:
    torch.manual_seed(0)
    bc = BC(spec, hidden=[16, 16])
    with torch.no_grad():
        for q in bc.parameters():
            q.add_(torch.randn_like(q))  # not a fresh initialisation
    ppo = PPO(spec, hidden=[16, 16])
    assert ppo.policy_network().policy_layers() == bc.policy_network().policy_layers()
    critic = {k: v.clone() for k, v in ppo.net.state_dict().items() if k.startswith(("critic_body", "value_out"))}
    ppo.load_policy_state(bc.policy_network().policy_state())
    obs = torch.randn(6, spec.obs_dim)
    for mine, theirs in zip(ppo.net.policy_params(obs), bc.policy(obs), strict=True):
        torch.testing.assert_close(mine, theirs)
    for k, v in critic.items():
        torch.testing.assert_close(ppo.net.state_dict()[k], v)  # the critic keeps its own initialisation


def test_policy_layers_tell_hidden_sizes_activations_and_heads_apart() -> None:
    base = PolicyNet(DISCRETE, [64, 64], "tanh").policy_layers()
    assert base == ["Linear(4, 64)", "Tanh", "Linear(64, 64)", "Tanh", "CategoricalHead(64, 3)"]
    assert ActorCritic(DISCRETE, [64, 64], "tanh").policy_layers() == base
    assert PolicyNet(DISCRETE, [64, 32], "tanh").policy_layers() != base
    assert PolicyNet(DISCRETE, [64, 64], "relu").policy_layers() != base
    assert PolicyNet(CONTINUOUS, [64], "tanh").policy_layers()[-1] == "GaussianHead(64, 2)"


def test_offpg_behaviour_copy_follows_a_loaded_policy() -> None:
    torch.manual_seed(0)
    bc = BC(DISCRETE, hidden=[8])
    with torch.no_grad():
        for q in bc.parameters():
            q.add_(1.0)
    off = OffPolicyPG(DISCRETE, hidden=[8])
    off.load_policy_state(bc.policy_network().policy_state())
    for k, v in off.policy.state_dict().items():
        torch.testing.assert_close(off.behaviour.state_dict()[k], v)  # β collects the first rollout with θ


def test_validate_refuses_init_from_into_algorithms_without_a_stochastic_mlp_policy() -> None:
    for recipe in ("dqn/cartpole", "sac/pendulum", "td3/pendulum", "ddpg/pendulum", "sarsa/cartpole"):
        with pytest.raises(RecipeError) as err:
            load(recipe, ["algo.init_from=runs/bc"])
        assert "algo.init_from: algo.name=" in err.value.message and "\n" not in err.value.message
        assert "bc, npg, offpg, ppo, ppo-kl, reinforce, trpo" in err.value.message
    with pytest.raises(RecipeError, match=r"algo\.init_from: must be a run directory"):
        load("ppo/cartpole", ["algo.init_from=[1]"])
    recipe = load("ppo/cartpole", ["algo.init_from=runs/bc"])  # the checkpoint itself is checked before a run
    assert recipe.algo["init_from"] == "runs/bc" and "init_from" not in load("ppo/cartpole").algo
