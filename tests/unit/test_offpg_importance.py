"""Importance weights: 1 on-policy, log-space products equal direct products, per-decision
is the product restricted to t' ≤ t, clipping, effective sample size, and the unbiasedness of the trajectory
ratio by exact enumeration."""

from __future__ import annotations

import itertools

import pytest
import torch

from lrl.estimators import effective_sample_size, importance_weights, log_importance_weights


def _rollout(n: int = 3, t: int = 15, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logp_new = torch.log(torch.rand(n, t, generator=g) * 0.9 + 0.05)
    logp_old = torch.log(torch.rand(n, t, generator=g) * 0.9 + 0.05)
    return logp_new, logp_old, torch.rand(n, t, generator=g) < 0.2


def _episode_of(done_row: list[bool], t: int) -> tuple[int, int]:
    start = t
    while start > 0 and not done_row[start - 1]:
        start -= 1
    end = t
    while end < len(done_row) - 1 and not done_row[end]:
        end += 1
    return start, end


@pytest.mark.parametrize("kind", ["trajectory", "per_decision", "first_order"])
def test_weights_are_exactly_one_on_policy(kind: str) -> None:
    logp, _, done = _rollout()
    w = importance_weights(logp - logp, done, kind)  # type: ignore[arg-type]
    assert torch.equal(w, torch.ones_like(w))


def test_log_space_products_equal_direct_products() -> None:
    """per_decision: W_t = Π_{t'=start}^{t} ρ_t' ("Π_current", Rossi eq. 4.5); trajectory: the product over the
    whole episode; first_order: ρ_t. Direct products of probability ratios in float64."""
    new, old, done = _rollout(seed=1)
    ratio = (new.double().exp() / old.double().exp())
    per = importance_weights(new - old, done, "per_decision")
    traj = importance_weights(new - old, done, "trajectory")
    first = importance_weights(new - old, done, "first_order")
    for i in range(new.shape[0]):
        for t in range(new.shape[1]):
            start, end = _episode_of(done[i].tolist(), t)
            assert per[i, t].item() == pytest.approx(ratio[i, start : t + 1].prod().item(), rel=1e-5)
            assert traj[i, t].item() == pytest.approx(ratio[i, start : end + 1].prod().item(), rel=1e-5)
            assert first[i, t].item() == pytest.approx(ratio[i, t].item(), rel=1e-5)


def test_per_decision_at_the_episode_end_is_the_trajectory_ratio() -> None:
    new, old, done = _rollout(seed=2)
    done[:, -1] = True
    per = importance_weights(new - old, done, "per_decision")
    traj = importance_weights(new - old, done, "trajectory")
    torch.testing.assert_close(per[done], traj[done])


def test_long_products_are_exact_in_log_space_and_clipped_before_overflow() -> None:
    log_ratio = torch.full((1, 400), 0.3)  # Π = e^120: overflows float32, not float64 log space
    done = torch.zeros(1, 400, dtype=torch.bool)
    log_w = log_importance_weights(log_ratio, done, "trajectory")
    assert log_w[0, 0].item() == pytest.approx(400 * log_ratio[0, 0].item(), rel=1e-12)
    w = importance_weights(log_ratio, done, "trajectory", max_weight=10.0)
    assert torch.equal(w, torch.full_like(w, 10.0))


def test_clipping_bounds() -> None:
    log_ratio = torch.log(torch.tensor([[0.5, 0.9, 1.0, 1.1, 3.0]]))
    done = torch.zeros_like(log_ratio, dtype=torch.bool)
    truncated = importance_weights(log_ratio, done, "first_order", max_weight=1.05)
    torch.testing.assert_close(truncated, torch.tensor([[0.5, 0.9, 1.0, 1.05, 1.05]]))
    clipped = importance_weights(log_ratio, done, "first_order", min_weight=0.8, max_weight=1.2)
    torch.testing.assert_close(clipped, torch.tensor([[0.8, 0.9, 1.0, 1.1, 1.2]]))


def test_effective_sample_size() -> None:
    assert effective_sample_size(torch.ones(10)).item() == pytest.approx(10.0)
    assert effective_sample_size(torch.tensor([1e6, 1.0, 1.0])).item() == pytest.approx(1.0, abs=1e-5)
    w = torch.tensor([0.5, 2.0, 1.0, 4.0])
    assert effective_sample_size(w).item() == pytest.approx(7.5**2 / (0.25 + 4 + 1 + 16))
    mask = torch.tensor([True, False, True, False])
    assert effective_sample_size(w, mask).item() == pytest.approx(1.5**2 / 1.25)


def test_trajectory_ratio_is_unbiased_exactly() -> None:
    """E_β[w(τ) ∇log p_θ(τ) G(τ)] = E_θ[∇log p_θ(τ) G(τ)] (Rossi eq. 4.3), enumerating a 2-step MDP."""
    g = torch.Generator().manual_seed(3)
    feat0, feat1 = torch.randn(4, generator=g), torch.randn(3, 4, generator=g)
    reward = torch.randn(3, 3, generator=g)
    theta = (torch.randn(4, 3, generator=g) * 0.5).requires_grad_(True)
    beta = torch.randn(4, 3, generator=g) * 0.5
    on, off = torch.zeros(12, dtype=torch.float64), torch.zeros(12, dtype=torch.float64)
    for a0, a1 in itertools.product(range(3), range(3)):
        lp = torch.log_softmax(feat0 @ theta, -1)[a0] + torch.log_softmax(feat1[a0] @ theta, -1)[a1]
        lb = torch.log_softmax(feat0 @ beta, -1)[a0] + torch.log_softmax(feat1[a0] @ beta, -1)[a1]
        (score,) = torch.autograd.grad(lp, theta)
        lr0 = torch.log_softmax(feat0 @ theta, -1)[a0] - torch.log_softmax(feat0 @ beta, -1)[a0]
        lr1 = lp - lb - lr0
        w = importance_weights(torch.stack([lr0, lr1]).detach()[None], torch.tensor([[False, True]]), "trajectory")
        on += lp.exp().item() * (score.double() * reward[a0, a1].item()).reshape(-1)
        off += lb.exp().item() * w[0, 0].item() * (score.double() * reward[a0, a1].item()).reshape(-1)
    torch.testing.assert_close(off, on, atol=1e-6, rtol=1e-5)
