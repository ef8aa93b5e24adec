"""SAC's tanh-squashed Gaussian head (Rossi §11.2, App. A.8 eq. a.36-a.38) and the batched critic ensemble.

The log-density is checked against the change of variables done numerically (autograd's derivative of the inverse
map), against a 1-D quadrature (it integrates to 1 over the bounds) and against the histogram of transformed
samples; then against TorchRL's ``TanhNormal`` with the same bounds.
"""

from __future__ import annotations

import math

import torch
from torchrl.modules.distributions import TanhNormal

from lrl.networks import EnsembleMLP, TanhGaussianHead, mlp
from lrl.networks.heads import log1m_tanh_sq


def _head(low: float = -2.0, high: float = 2.0, dim: int = 1) -> TanhGaussianHead:
    return TanhGaussianHead(4, dim, (low,) * dim, (high,) * dim)


def test_log1m_tanh_sq_is_exact_and_finite_where_the_naive_form_is_not() -> None:
    u = torch.linspace(-6, 6, 121, dtype=torch.float64)
    torch.testing.assert_close(log1m_tanh_sq(u), torch.log(1 - torch.tanh(u) ** 2))
    big = torch.tensor([-60.0, -20.0, 20.0, 60.0])
    assert torch.isinf(torch.log(1 - torch.tanh(big) ** 2)).all()  # tanh rounds to ±1 in float32
    torch.testing.assert_close(log1m_tanh_sq(big), 2 * math.log(2) - 2 * big.abs())  # 4 e^{-2|u|} asymptotically


def test_log_prob_equals_numeric_change_of_variables() -> None:
    """q(a) = N(u; μ, σ) |du/da| with u = atanh((a − c)/s), |du/da| from autograd, not from the closed form."""
    head = _head(-2.0, 3.0, dim=2)
    mean, log_std = torch.tensor([[0.3, -1.2]]), torch.tensor([[-0.4, 0.5]])
    action = torch.tensor([[1.7, -1.1]])
    a = action.clone().requires_grad_(True)
    u = torch.atanh((a - head.loc) / head.scale)
    du_da = torch.autograd.grad(u.sum(), a)[0]  # diagonal Jacobian: one derivative per dimension
    normal = torch.distributions.Normal(mean, log_std.exp())
    expected = (normal.log_prob(u.detach()) + du_da.abs().log()).sum(-1)
    torch.testing.assert_close(head.log_prob((mean, log_std), action), expected)


def test_density_integrates_to_one_over_the_bounds_and_matches_sample_histogram() -> None:
    head = _head(-2.0, 2.0)
    mean, log_std = torch.tensor([[0.8]], dtype=torch.float64), torch.tensor([[-0.3]], dtype=torch.float64)
    head = head.double()
    grid = torch.linspace(-2, 2, 200_001, dtype=torch.float64)[1:-1, None]
    density = head.log_prob((mean.expand(len(grid), 1), log_std.expand(len(grid), 1)), grid).exp()
    assert abs(torch.trapezoid(density, grid[:, 0]).item() - 1.0) < 1e-4
    n = 400_000
    g = torch.Generator().manual_seed(0)
    samples, logp = head.rsample((mean.expand(n, 1), log_std.expand(n, 1)), g)
    torch.testing.assert_close(logp, head.log_prob((mean.expand(n, 1), log_std.expand(n, 1)), samples))
    edges = torch.linspace(-1.6, 1.9, 15, dtype=torch.float64)
    hist = torch.histc(samples[:, 0], bins=14, min=-1.6, max=1.9) / (n * (edges[1] - edges[0]))
    centres = ((edges[1:] + edges[:-1]) / 2)[:, None]
    at_centres = head.log_prob((mean.expand(14, 1), log_std.expand(14, 1)), centres).exp()
    torch.testing.assert_close(hist, at_centres, rtol=0.03, atol=0.005)


def test_samples_stay_within_bounds_and_log_probs_finite_when_saturated() -> None:
    head = _head(-2.0, 2.0, dim=3)
    mean = torch.tensor([[50.0, -50.0, 0.0]]).expand(1000, 3)
    log_std = torch.tensor([[-5.0, 2.0, 2.0]]).expand(1000, 3)
    action, logp = head.rsample((mean, log_std), torch.Generator().manual_seed(1))
    assert ((action >= -2.0) & (action <= 2.0)).all()
    assert torch.isfinite(logp).all()
    params = head(torch.randn(64, 4) * 100)  # the log-std is clamped to [−20, 2]
    assert params[1].min() >= -20.0 and params[1].max() <= 2.0


def test_rsample_is_reparameterised() -> None:
    """da/dμ = s (1 − tanh(u)²): gradients reach μ and σ through u, ε is a constant (Rossi §11.2)."""
    head = _head(-2.0, 2.0)
    mean = torch.tensor([[0.4]], requires_grad=True)
    log_std = torch.tensor([[-1.0]], requires_grad=True)
    g = torch.Generator().manual_seed(3)
    action, _ = head.rsample((mean, log_std), g)
    noise = torch.randn((1, 1), generator=torch.Generator().manual_seed(3))
    u = 0.4 + math.exp(-1.0) * noise
    d_mean, d_log_std = torch.autograd.grad(action.sum(), (mean, log_std))
    torch.testing.assert_close(d_mean, 2.0 * (1 - torch.tanh(u) ** 2))
    torch.testing.assert_close(d_log_std, 2.0 * (1 - torch.tanh(u) ** 2) * math.exp(-1.0) * noise)


def test_matches_torchrl_tanh_normal_with_bounds_and_mode() -> None:
    head = _head(-2.0, 2.0, dim=2)
    mean, log_std = head(torch.randn(32, 4))
    theirs = TanhNormal(mean, log_std.exp(), low=-2.0, high=2.0)
    action = theirs.sample()
    torch.testing.assert_close(head.log_prob((mean, log_std), action), theirs.log_prob(action), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(head.mode((mean, log_std)), 2.0 * torch.tanh(mean))
    assert abs(head.log_scale - 2 * math.log(2.0)) < 1e-12


def test_ensemble_members_equal_separate_mlps_and_frozen_gives_input_gradients_only() -> None:
    torch.manual_seed(0)
    ens = EnsembleMLP(2, 5, [16, 16], 1, "relu")
    x = torch.randn(7, 5)
    out = ens(x)
    assert out.shape == (2, 7, 1)
    for i in range(2):
        net = mlp(5, [16, 16], 1, "relu")
        linears = [m for m in net if isinstance(m, torch.nn.Linear)]
        with torch.no_grad():
            for lin, layer in zip(linears, ens.layers, strict=True):
                lin.weight.copy_(layer.weight[i].T)
                lin.bias.copy_(layer.bias[i, 0])
        torch.testing.assert_close(out[i], net(x))
    xi = x.clone().requires_grad_(True)
    ens(xi, frozen=True).sum().backward()
    assert xi.grad is not None and xi.grad.abs().sum() > 0
    assert all(p.grad is None for p in ens.parameters())
    bound = 1 / math.sqrt(16)  # nn.Linear's init: U(±1/√fan_in) for weight and bias
    assert ens.layers[1].weight.abs().max() <= bound and ens.layers[1].bias.abs().max() <= bound


def test_sample_is_the_same_draw_as_rsample() -> None:
    head = _head(-2.0, 2.0, dim=2)
    params = head(torch.randn(8, 4))
    a = head.sample(params, torch.Generator().manual_seed(7))
    b, _ = head.rsample(params, torch.Generator().manual_seed(7))
    torch.testing.assert_close(a, b)
