"""Conjugate gradient and Fisher-vector products, checked in float64 against
explicit matrices: the Hessian of the mean KL from ``torch.autograd.functional.hessian``, the exact Fisher
E[∇logπ ∇logπᵀ] (sum over actions for a categorical policy), and JᵀMJ from explicit Jacobians (Rossi §7.8.1).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from lrl.estimators.cg import conjugate_gradient
from lrl.estimators.fisher import (
    Params,
    fisher_vector_product,
    flat_grad,
    flat_params,
    set_flat_params_,
    subsample,
)
from lrl.networks import CategoricalHead, GaussianHead


def random_spd(n: int, cond: float, gen: torch.Generator) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    eig = torch.logspace(0, math.log10(cond), n, dtype=torch.float64)
    return q @ torch.diag(eig) @ q.T


# --- conjugate gradient ---------------------------------------------------------------------------------------
def test_cg_solves_spd_system_within_dim_iterations_matrix_free() -> None:
    gen = torch.Generator().manual_seed(0)
    n = 30
    a, b = random_spd(n, 10.0, gen), torch.randn(n, generator=gen, dtype=torch.float64)
    calls = []

    def avp(v: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return a @ v

    tol = 1e-20 * b.dot(b).item()  # ‖r‖ ≤ 1e-10 ‖b‖
    out = conjugate_gradient(avp, b, max_iterations=n, residual_tol=tol)
    assert out.residual_sq <= tol and out.iterations <= n
    assert len(calls) == out.iterations  # one product per iteration, none for r_0 = b
    assert torch.linalg.norm(a @ out.x - b) <= 1e-9 * torch.linalg.norm(b)  # the recursion's r is the true one
    torch.testing.assert_close(out.x, torch.linalg.solve(a, b), rtol=1e-8, atol=1e-10)


def test_cg_directions_are_conjugate_and_residuals_orthogonal() -> None:
    gen = torch.Generator().manual_seed(1)
    n = 8
    a, b = random_spd(n, 10.0, gen), torch.randn(n, generator=gen, dtype=torch.float64)
    seen: list[torch.Tensor] = []
    conjugate_gradient(lambda v: seen.append(v.clone()) or a @ v, b, max_iterations=n, residual_tol=0.0)
    p = torch.stack(seen)  # the search directions p_k, in order
    gram = p @ a @ p.T
    off = gram - torch.diag(torch.diag(gram))
    assert off.abs().max() < 1e-8 * gram.diag().abs().max()
    # the residuals b − A x_k after k steps are the first components of each p_k; check via x_k directly
    xs = [conjugate_gradient(lambda v: a @ v, b, max_iterations=k, residual_tol=0.0).x for k in range(n)]
    r = torch.stack([b - a @ x for x in xs])
    rg = r @ r.T
    assert (rg - torch.diag(torch.diag(rg))).abs().max() < 1e-8 * rg.diag().max()


def test_cg_on_psd_matrix_with_b_in_range_and_early_stop() -> None:
    gen = torch.Generator().manual_seed(2)
    m = torch.randn(10, 4, generator=gen, dtype=torch.float64)
    a = m @ m.T  # rank 4
    b = a @ torch.randn(10, generator=gen, dtype=torch.float64)
    out = conjugate_gradient(lambda v: a @ v, b, max_iterations=10, residual_tol=1e-20)
    assert torch.linalg.norm(a @ out.x - b) < 1e-8 * torch.linalg.norm(b)
    assert out.iterations <= 5  # rank 4: converges in ~4 steps, then the tolerance stops it
    assert conjugate_gradient(lambda v: a @ v, torch.zeros(10, dtype=torch.float64)).iterations == 0


# --- a small float64 policy network ---------------------------------------------------------------------------
HEADS = {"discrete": CategoricalHead(1, 1), "continuous": GaussianHead(1, 1)}  # only their closed forms are used


class SmallPolicy(nn.Module):
    """A 3-5-k tanh MLP whose distribution parameters are computed in float64 (the heads' forward casts to
    float32; their ``kl`` is a pure function of the distribution parameters)."""

    def __init__(self, kind: str, obs_dim: int = 3, k: int = 3) -> None:
        super().__init__()
        self.kind = kind
        self.body = nn.Sequential(nn.Linear(obs_dim, 5), nn.Tanh(), nn.Linear(5, k)).double()
        if kind == "continuous":
            self.log_std = nn.Parameter(torch.tensor([0.1, -0.3, 0.2][:k], dtype=torch.float64))

    @property
    def head(self) -> CategoricalHead | GaussianHead:  # a property: the head's own layers are not ours
        return HEADS[self.kind]  # type: ignore[return-value]

    def forward(self, obs: torch.Tensor) -> Params:
        out = self.body(obs)
        if self.kind == "discrete":
            return (torch.log_softmax(out, -1),)
        return out, self.log_std.expand_as(out)


def _flat_fn(net: nn.Module, obs: torch.Tensor):  # type: ignore[no-untyped-def]
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for _, p in net.named_parameters()]

    def unflatten(theta: torch.Tensor) -> dict[str, torch.Tensor]:
        out, i = {}, 0
        for name, shape in zip(names, shapes, strict=True):
            n = math.prod(shape)
            out[name] = theta[i:i + n].view(shape)
            i += n
        return out

    return lambda theta: functional_call(net, unflatten(theta), (obs,))


def kl_hessian(net: SmallPolicy, obs: torch.Tensor) -> torch.Tensor:
    """∇²_θ' mean_s KL(π_θ(·|s) ‖ π_θ'(·|s)) at θ' = θ, the full matrix."""
    params_of = _flat_fn(net, obs)
    theta = flat_params(list(net.parameters()))
    old = tuple(t.detach() for t in params_of(theta))
    return torch.autograd.functional.hessian(lambda th: net.head.kl(old, params_of(th)).mean(), theta)


def exact_fisher(net: SmallPolicy, obs: torch.Tensor) -> torch.Tensor:
    """mean_s Σ_a π(a|s) ∇logπ(a|s) ∇logπ(a|s)ᵀ (categorical) or JᵀMJ with the Gaussian's M = diag(1/σ², 2)."""
    params_of = _flat_fn(net, obs)
    theta = flat_params(list(net.parameters()))
    if net.kind == "discrete":
        jac = torch.autograd.functional.jacobian(lambda th: params_of(th)[0], theta)  # [N, A, P]
        p = params_of(theta)[0].exp()
        return torch.einsum("na,nap,naq->pq", p, jac, jac) / obs.shape[0]
    jm = torch.autograd.functional.jacobian(lambda th: params_of(th)[0], theta)  # [N, d, P]
    js = torch.autograd.functional.jacobian(lambda th: params_of(th)[1], theta)
    inv_var = torch.exp(-2 * net.log_std.detach())
    f = torch.einsum("d,ndp,ndq->pq", inv_var, jm, jm) + 2.0 * torch.einsum("ndp,ndq->pq", js, js)
    return f / obs.shape[0]


def _renormalised_kl(head: CategoricalHead):  # type: ignore[no-untyped-def]
    return lambda old, new: head.kl(old, (torch.log_softmax(new[0], -1),))


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_fvp_equals_kl_hessian_and_exact_fisher_times_v(kind: str) -> None:
    torch.manual_seed(0)
    net = SmallPolicy(kind)
    obs = torch.randn(16, 3, dtype=torch.float64)
    params = list(net.parameters())
    hess, fisher = kl_hessian(net, obs), exact_fisher(net, obs)
    torch.testing.assert_close(hess, fisher, rtol=1e-9, atol=1e-12)  # F = Hessian of KL (Rossi eq. A.28)
    kl = net.head.kl if kind == "continuous" else _renormalised_kl(net.head)  # type: ignore[arg-type]
    v = torch.randn(hess.shape[0], dtype=torch.float64)
    for method in ("hessian", "jmj"):
        fvp = fisher_vector_product(kl, net(obs), params, method=method)  # type: ignore[arg-type]
        torch.testing.assert_close(fvp(v), hess @ v, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(fvp(2 * v), 2 * (hess @ v), rtol=1e-9, atol=1e-12)  # reusable closure
    damped = fisher_vector_product(net.head.kl, net(obs), params, damping=0.1)
    torch.testing.assert_close(damped(v), hess @ v + 0.1 * v, rtol=1e-9, atol=1e-12)
    reduced = fisher_vector_product(net.head.kl, net(obs), params, damping=0.1, reduce=lambda t: 3 * t)
    torch.testing.assert_close(reduced(v), 3 * (hess @ v) + 0.1 * v, rtol=1e-9, atol=1e-12)


def test_jmj_needs_stationary_coordinates() -> None:
    """With normalised log-probs as coordinates the KL is not stationary and JᵀMJ misses the Fisher (§7.8.1)."""
    torch.manual_seed(1)
    net = SmallPolicy("discrete")
    obs = torch.randn(8, 3, dtype=torch.float64)
    v = torch.randn(sum(p.numel() for p in net.parameters()), dtype=torch.float64)
    naive = fisher_vector_product(net.head.kl, net(obs), list(net.parameters()), method="jmj")
    assert torch.linalg.norm(naive(v)) < 1e-12  # KL is linear in the log-prob coordinates: M = 0
    assert torch.linalg.norm(kl_hessian(net, obs) @ v) > 1e-3


def test_fvp_on_a_subsample_is_the_fisher_of_those_states_and_kl_gradient_is_zero() -> None:
    torch.manual_seed(2)
    net = SmallPolicy("continuous")
    obs = torch.randn(40, 3, dtype=torch.float64)
    idx = subsample(40, 0.1, torch.Generator().manual_seed(0))
    assert idx is not None and idx.numel() == 4 and idx.unique().numel() == 4 and torch.equal(idx, idx.sort().values)
    assert torch.equal(idx, subsample(40, 0.1, torch.Generator().manual_seed(0)))  # type: ignore[arg-type]
    assert subsample(40, 1.0, torch.Generator()) is None
    params = list(net.parameters())
    v = torch.randn(sum(p.numel() for p in params), dtype=torch.float64)
    fvp = fisher_vector_product(net.head.kl, net(obs[idx]), params)
    torch.testing.assert_close(fvp(v), kl_hessian(net, obs[idx]) @ v, rtol=1e-9, atol=1e-12)
    dist = net(obs)
    grad = flat_grad(net.head.kl(tuple(t.detach() for t in dist), dist).mean(), params)
    assert grad.abs().max() < 1e-12  # ∇_θ' KL(θ‖θ') = 0 at θ' = θ (Fragkiadaki)


def test_flat_params_roundtrip_is_bitwise() -> None:
    net = SmallPolicy("continuous")
    params = list(net.parameters())
    theta = flat_params(params)
    set_flat_params_(params, theta + 1.0)
    assert not torch.equal(flat_params(params), theta)
    set_flat_params_(params, theta)
    assert torch.equal(flat_params(params), theta)
    with pytest.raises(ValueError):
        set_flat_params_(params, theta[:-1])


def test_kl_quadratic_approximation() -> None:
    """KL(θ ‖ θ+εd) − ½ε² dᵀFd = O(ε³) (Rossi eq. A.25, Atreya eq. 20)."""
    torch.manual_seed(3)
    net = SmallPolicy("discrete")
    obs = torch.randn(16, 3, dtype=torch.float64)
    params_of = _flat_fn(net, obs)
    theta = flat_params(list(net.parameters()))
    f = exact_fisher(net, obs)
    d = torch.randn_like(theta)
    old = params_of(theta)
    errs = []
    for eps in (1e-2, 5e-3):
        kl = net.head.kl(old, params_of(theta + eps * d)).mean()
        errs.append(abs(kl - 0.5 * eps**2 * d @ f @ d).item())
    assert errs[1] < errs[0] / 6  # third order: halving ε divides the error by ~8
