"""Baselines: the optimal per-component baseline of Yin §4.3.2 by exact enumeration, lower
variance than the average baseline, every baseline leaves the mean gradient unchanged, and per-trajectory score
gradients from torch.func equal a per-episode autograd loop."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.func import functional_call

from lrl.estimators import average_baseline, episode_index, optimal_baseline, trajectory_scores
from lrl.networks import PolicyNet
from lrl.spec import EnvSpec


def _enumerate(seed: int = 0) -> dict[str, torch.Tensor]:
    """Every trajectory of a 2-step, 3-action MDP with a linear softmax policy: probability, score g(τ), return,
    per-step scores and a state feature per step (for state-dependent baselines)."""
    g = torch.Generator().manual_seed(seed)
    kw = {"generator": g, "dtype": torch.float64}
    feat0, feat1 = torch.randn(4, **kw), torch.randn(3, 4, **kw)  # type: ignore[arg-type]
    r0, r1 = torch.randn(3, **kw) + 1.0, torch.randn(3, 3, **kw) + 2.0  # type: ignore[arg-type]
    theta = (torch.randn(4, 3, **kw) * 0.7).requires_grad_(True)  # type: ignore[arg-type]
    out: dict[str, list[torch.Tensor]] = {"p": [], "g": [], "R": [], "g0": [], "g1": [], "s1": [], "G1": []}
    for a0, a1 in itertools.product(range(3), range(3)):
        lp0 = torch.log_softmax(feat0 @ theta, -1)[a0]
        lp1 = torch.log_softmax(feat1[a0] @ theta, -1)[a1]
        (g0,) = torch.autograd.grad(lp0, theta)
        (g1,) = torch.autograd.grad(lp1, theta)
        out["p"].append((lp0 + lp1).exp().detach())
        out["g"].append((g0 + g1).reshape(-1))
        out["g0"].append(g0.reshape(-1))
        out["g1"].append(g1.reshape(-1))
        out["R"].append(r0[a0] + r1[a0, a1])
        out["G1"].append(r1[a0, a1])
        out["s1"].append(torch.tensor(a0))
    return {k: torch.stack(v).double() for k, v in out.items()}  # float64 throughout: exact to ~1e-15


def _moments(p: torch.Tensor, est: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact mean and per-component variance of a per-trajectory estimator [trajectories, components]."""
    mean = (p[:, None] * est).sum(0)
    return mean, (p[:, None] * (est - mean) ** 2).sum(0)


def test_optimal_baseline_is_the_seed_formula_and_minimises_variance_exactly() -> None:
    m = _enumerate()
    p, g, R = m["p"], m["g"], m["R"]
    assert p.sum().item() == pytest.approx(1.0, abs=1e-6)
    b_star = optimal_baseline(g * R[:, None], g, weight=p)
    expected = (p[:, None] * g**2 * R[:, None]).sum(0) / (p[:, None] * g**2).sum(0)  # E[g² r] / E[g²]
    torch.testing.assert_close(b_star, expected)
    _, var_star = _moments(p, g * (R[:, None] - b_star))
    b_avg = (p * R).sum()  # the average-return baseline, exactly E[r(τ)]
    _, var_avg = _moments(p, g * (R - b_avg)[:, None])
    _, var_none = _moments(p, g * R[:, None])
    assert (var_star <= var_avg + 1e-12).all() and (var_star <= var_none + 1e-12).all()
    assert var_star.sum() < var_avg.sum() < var_none.sum()
    for delta in (-0.1, 0.1):  # a stationary point of the quadratic: any shift increases every component
        _, var_shift = _moments(p, g * (R[:, None] - b_star - delta))
        assert (var_shift > var_star).all()


def test_baselines_leave_the_mean_gradient_unchanged_exactly() -> None:
    """E[g (r − b)] = E[g r] for constants (average, optimal per component) and, with rewards-to-go, for any
    b(s_t): E[Σ_t ∇log π_t (G_t − b(s_t))] = E[Σ_t ∇log π_t G_t] (Rossi §3.5, EGLP)."""
    m = _enumerate(seed=1)
    p, g, R = m["p"], m["g"], m["R"]
    plain, _ = _moments(p, g * R[:, None])
    for b in ((p * R).sum(), optimal_baseline(g * R[:, None], g, weight=p), torch.tensor(123.0)):
        mean, _ = _moments(p, g * (R[:, None] - b))
        torch.testing.assert_close(mean, plain, atol=1e-9, rtol=1e-7)
    value_of_state = torch.tensor([0.3, -2.0, 5.0], dtype=torch.float64)  # arbitrary b(s_1), b(s_0) = 7
    G0 = R
    rtg = m["g0"] * G0[:, None] + m["g1"] * m["G1"][:, None]
    with_b = m["g0"] * (G0 - 7.0)[:, None] + m["g1"] * (m["G1"] - value_of_state[m["s1"].long()])[:, None]
    torch.testing.assert_close(_moments(p, with_b)[0], _moments(p, rtg)[0], atol=1e-9, rtol=1e-7)


def test_average_baseline() -> None:
    returns = torch.tensor([1.0, 2.0, 3.0, 10.0])
    assert average_baseline(returns).item() == pytest.approx(4.0)
    assert average_baseline(returns, torch.tensor([1, 1, 1, 0])).item() == pytest.approx(2.0)


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_trajectory_scores_equal_an_autograd_loop(kind: str) -> None:
    torch.manual_seed(0)
    spec = EnvSpec("toy", (3,), kind, 2)  # type: ignore[arg-type]
    net = PolicyNet(spec, [8], "tanh")
    s = 11
    obs = torch.randn(s, 3)
    action = torch.randint(0, 2, (s,)) if kind == "discrete" else torch.randn(s, 2)
    done = torch.tensor([0, 0, 1, 0, 1, 1, 1, 0, 0, 0, 1], dtype=torch.bool)
    mask = torch.tensor([1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1], dtype=torch.bool)  # two padding steps
    phi = torch.randn(s)
    episode = episode_index(done, mask)
    params = dict(net.named_parameters())

    def log_prob(p: dict[str, torch.Tensor], o: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return net.head.log_prob(functional_call(net, p, (o,)), a)

    y, x = trajectory_scores(log_prob, params, obs, action, phi, episode, mask.float(), 3, chunk_size=4)
    for e in range(3):
        steps = (episode == e) & mask
        logp = net.head.log_prob(net(obs[steps]), action[steps])
        gy = torch.autograd.grad(logp.sum(), list(params.values()), retain_graph=True)
        gx = torch.autograd.grad((logp * phi[steps]).sum(), list(params.values()))
        torch.testing.assert_close(y[e], torch.cat([t.reshape(-1) for t in gy]), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(x[e], torch.cat([t.reshape(-1) for t in gx]), atol=1e-5, rtol=1e-5)
