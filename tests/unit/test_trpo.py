"""NPG and TRPO steps: the surrogate's gradient at θ' = θ is the vanilla PG, the full natural
step has quadratic KL exactly δ (and real KL ≈ δ for small δ), the line search accepts only steps with
mean KL ≤ δ and an improved surrogate, and an impossible δ leaves θ bitwise unchanged."""

from __future__ import annotations

import pytest
import torch

from lrl.algos.npg.module import NPG
from lrl.algos.trpo.loss import backtracking_line_search, natural_step_scale
from lrl.algos.trpo.module import TRPO
from lrl.estimators.cg import conjugate_gradient
from lrl.estimators.fisher import fisher_vector_product, flat_grad, flat_params, set_flat_params_
from lrl.estimators.losses import surrogate
from lrl.spec import EnvSpec
from tests.unit.test_trpo_estimators import SmallPolicy, _flat_fn, exact_fisher

CARTPOLE = EnvSpec("CartPole-v1", (4,), "discrete", 2)
PENDULUM = EnvSpec("Pendulum-v1", (3,), "continuous", 1, (-2.0,), (2.0,))


def test_surrogate_gradient_at_old_policy_is_the_vanilla_policy_gradient() -> None:
    torch.manual_seed(0)
    net = SmallPolicy("discrete")
    obs, actions, adv = torch.randn(32, 3, dtype=torch.float64), torch.randint(0, 3, (32,)), torch.randn(32)
    logp = net.head.log_prob(net(obs), actions)
    params = list(net.parameters())
    surr = surrogate(logp, logp.detach(), adv.double())
    assert surr.item() == pytest.approx(adv.double().mean().item())  # ratio 1 everywhere
    g = flat_grad(surr, params, retain_graph=True)
    torch.testing.assert_close(g, flat_grad((logp * adv.double()).mean(), params))


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
@pytest.mark.parametrize("damping", [0.0, 0.1])
def test_natural_step_has_quadratic_kl_delta_and_real_kl_is_the_quadratic_one(kind: str, damping: float) -> None:
    torch.manual_seed(1)
    net = SmallPolicy(kind)
    obs = torch.randn(64, 3, dtype=torch.float64)
    params = list(net.parameters())
    dist = net(obs)
    actions = net.head.sample(tuple(t.detach() for t in dist))
    adv = torch.randn(64, dtype=torch.float64)
    logp = net.head.log_prob(dist, actions)
    g = flat_grad(surrogate(logp, logp.detach(), adv), params, retain_graph=True)
    fvp = fisher_vector_product(net.head.kl, dist, params, damping=damping)
    x = conjugate_gradient(fvp, g, max_iterations=g.numel(), residual_tol=1e-20).x
    f_hat = exact_fisher(net, obs) + damping * torch.eye(g.numel(), dtype=torch.float64)
    if damping:  # well conditioned: CG solved (F + cI) x = g
        torch.testing.assert_close(f_hat @ x, g, rtol=1e-6, atol=1e-9)
    params_of = _flat_fn(net, obs)
    theta = flat_params(params)
    for delta in (0.01, 1e-6):
        step = natural_step_scale(x, fvp(x), delta) * x
        assert 0.5 * step @ f_hat @ step == pytest.approx(delta, rel=1e-6)  # ½ΔᵀFΔ = δ
        if damping:  # = sqrt(2δ / gᵀF⁻¹g) F⁻¹g (Rossi eq. 6.7 = eq. 7.50)
            torch.testing.assert_close(step, torch.sqrt(2 * delta / (g @ x)) * x, rtol=1e-6, atol=1e-12)
        real_kl = net.head.kl(params_of(theta), params_of(theta + step)).mean().item()
        quadratic = 0.5 * (step @ (f_hat - damping * torch.eye(g.numel(), dtype=torch.float64)) @ step).item()
        if delta < 1e-3 and damping:  # KL ≈ ½ΔᵀFΔ for small steps (eq. A.25); undamped, x is huge along
            assert real_kl == pytest.approx(quadratic, rel=1e-2)  # F's near-null directions and ε³ terms show


def test_natural_step_with_identity_fisher_is_the_normalised_vanilla_step() -> None:
    """F = I: θ' = θ + sqrt(2δ/‖g‖²) g, Rossi eq. 6.6 with ε = 2δ."""
    g = torch.tensor([3.0, -4.0], dtype=torch.float64)
    x = conjugate_gradient(lambda v: v, g).x
    step = natural_step_scale(x, x, 0.5) * x
    torch.testing.assert_close(step, (1.0 / 5.0) * g)


def test_line_search_accepts_first_step_meeting_both_conditions_else_rejects() -> None:
    seen: list[float] = []

    def evaluate(fraction: float) -> tuple[float, float]:  # KL grows as fraction², surrogate peaks at 0.5
        seen.append(fraction)
        return 0.04 * fraction**2, fraction * (1.0 - fraction)

    ls = backtracking_line_search(evaluate, old_surrogate=0.0, max_kl=0.01, backtrack_coef=0.5, max_backtracks=5)
    # j=0: KL 0.04 > δ; j=1: KL 0.01 ≤ δ and surrogate 0.25 > 0 → accepted
    assert ls.accepted and ls.backtracks == 1 and ls.fraction == 0.5 and seen == [1.0, 0.5]
    assert ls.kl == pytest.approx(0.01) and ls.surrogate == pytest.approx(0.25)
    seen.clear()
    rejected = backtracking_line_search(evaluate, old_surrogate=1.0, max_kl=0.01, backtrack_coef=0.5,
                                        max_backtracks=3)
    assert not rejected.accepted and rejected.fraction == 0.0 and seen == [1.0, 0.5, 0.25, 0.125]  # j = 0 … U
    flat = backtracking_line_search(lambda f: (0.0, 0.0), old_surrogate=0.0, max_kl=0.01)
    assert not flat.accepted  # no improvement: "the surrogate improved" is strict


def _batch(spec: EnvSpec, n: int = 256) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    obs = torch.randn(n, spec.obs_dim, generator=gen)
    if spec.action_kind == "discrete":
        action = torch.randint(0, spec.action_dim, (n,), generator=gen)
    else:
        action = torch.randn(n, spec.action_dim, generator=gen)
    return obs, action, torch.randn(n, generator=gen)


def _policy_state(m: TRPO) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in m.state_dict().items()}


@pytest.mark.parametrize("spec", [CARTPOLE, PENDULUM], ids=["categorical", "gaussian"])
def test_trpo_accepted_step_keeps_kl_within_delta_and_improves_surrogate(spec: EnvSpec) -> None:
    torch.manual_seed(2)
    m = TRPO(spec, max_kl=0.01, ortho_init=False)  # a visible policy, not the near-uniform 0.01-gain output
    obs, action, adv = _batch(spec)
    with torch.no_grad():
        old = tuple(t.clone() for t in m.net.policy_params(obs))  # the Gaussian's log-std is a view of θ
        old_surr = surrogate(m.net.head.log_prob(old, action), m.net.head.log_prob(old, action), adv).item()
    before = _policy_state(m)
    m._policy_step(obs, action, adv, torch.Generator().manual_seed(0))
    with torch.no_grad():
        new = m.net.policy_params(obs)
        kl = m.net.head.kl(old, new).mean().item()
        surr = surrogate(m.net.head.log_prob(new, action), m.net.head.log_prob(old, action), adv).item()
    assert m._sums["stats/line_search_accepted"].item() == 1.0
    assert 0.0 < kl <= 0.01 and surr > old_surr
    # the line search judged the step by this same KL (a stale "old" log-std view of θ would understate it)
    assert m._sums["stats/kl"].item() == pytest.approx(kl, rel=1e-4)
    after = m.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("net.actor_body"))
    assert all(torch.equal(before[k], after[k]) for k in before if "critic" in k or "value" in k)


@pytest.mark.parametrize("spec", [CARTPOLE, PENDULUM], ids=["categorical", "gaussian"])
def test_trpo_impossible_delta_rejects_and_leaves_parameters_bitwise_unchanged(spec: EnvSpec) -> None:
    torch.manual_seed(3)
    m = TRPO(spec, max_kl=1e-30, max_backtracks=3)
    obs, action, adv = _batch(spec)
    before = _policy_state(m)
    m._policy_step(obs, action, adv, torch.Generator().manual_seed(0))
    assert m._sums["stats/line_search_accepted"].item() == 0.0
    after = m.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_npg_module_takes_the_full_step_without_line_search() -> None:
    torch.manual_seed(4)
    m = NPG(CARTPOLE, max_kl=1e-4, damping=0.1, ortho_init=False)
    assert not m.line_search and TRPO(CARTPOLE).line_search and not TRPO(CARTPOLE, line_search=False).line_search
    obs, action, adv = _batch(CARTPOLE)
    params = m.actor_parameters()
    theta = flat_params(params)
    with torch.no_grad():
        old = tuple(t.clone() for t in m.net.policy_params(obs))
    m._policy_step(obs, action, adv, torch.Generator().manual_seed(0))
    step = flat_params(params) - theta
    # ½ΔᵀF̂Δ = δ with the module's own (damped) Fisher-vector product at θ_old
    new_params = flat_params(params)
    set_flat_params_(params, theta)
    fvp = fisher_vector_product(m.net.head.kl, m.net.policy_params(obs), params, damping=0.1)
    assert 0.5 * step.dot(fvp(step)).item() == pytest.approx(1e-4, rel=1e-4)
    quadratic = 0.5 * step.dot(fvp(step) - 0.1 * step).item()
    set_flat_params_(params, new_params)
    with torch.no_grad():
        kl = m.net.head.kl(old, m.net.policy_params(obs)).mean().item()
    assert kl == pytest.approx(quadratic, rel=0.02)  # small δ: the real KL is the quadratic one
    assert "stats/line_search_accepted" not in m._sums
