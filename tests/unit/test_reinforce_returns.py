"""Reward-to-go, whole-trajectory returns and per-episode segment sums against slow
reference loops, in both discount conventions and across episode boundaries of a flat vector rollout."""

from __future__ import annotations

import itertools

import pytest
import torch

from lrl.estimators import (
    episode_cumsum,
    episode_index,
    episode_return,
    episode_starts,
    episode_sum,
    episode_timestep,
    reward_to_go,
)


def _episodes(done_row: list[bool]) -> list[list[int]]:
    """Step indices of each episode of one row (the row end closes the last one)."""
    out, cur = [], []
    for t, d in enumerate(done_row):
        cur.append(t)
        if d:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out


def _rtg_loop(reward: torch.Tensor, done: torch.Tensor, gamma: float, absolute: bool,
              boot: torch.Tensor | None = None) -> torch.Tensor:
    """G_t = Σ_{k=t}^{end} γ^{k−t} r_k (+ γ^{end+1−t} boot_end), times γ^{t−start} if absolute: plain loops."""
    out = torch.zeros(reward.shape, dtype=torch.float64)
    for i in range(reward.shape[0]):
        for ep in _episodes(done[i].tolist()):
            start = ep[0]
            for t in ep:
                total = sum(gamma ** (k - t) * reward[i, k].item() for k in ep if k >= t)
                if boot is not None:
                    total += gamma ** (ep[-1] + 1 - t) * boot[i, ep[-1]].item()
                out[i, t] = total * (gamma ** (t - start) if absolute else 1.0)
    return out


def close(got: torch.Tensor, expected: torch.Tensor) -> None:
    """float32 estimator against a float64 loop."""
    torch.testing.assert_close(got.double(), expected.double(), atol=1e-5, rtol=1e-5)


def _data(n: int = 3, t: int = 17, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, t, generator=g), torch.rand(n, t, generator=g) < 0.25


@pytest.mark.parametrize("discounting", ["relative", "absolute"])
def test_reward_to_go_equals_python_loop(discounting: str) -> None:
    reward, done = _data()
    got = reward_to_go(reward, done, 0.9, discounting=discounting)  # type: ignore[arg-type]
    close(got, _rtg_loop(reward, done, 0.9, discounting == "absolute"))


@pytest.mark.parametrize("discounting", ["relative", "absolute"])
def test_reward_to_go_on_a_flat_vector_rollout_respects_boundaries(discounting: str) -> None:
    # rows of a complete-episode rollout end with done; flattened row-major they form one vector whose episodes
    # must not leak into each other
    reward, done = _data(n=4, t=9, seed=1)
    done[:, -1] = True
    rows = reward_to_go(reward, done, 0.8, discounting=discounting)  # type: ignore[arg-type]
    flat = reward_to_go(reward.reshape(-1), done.reshape(-1), 0.8, discounting=discounting)  # type: ignore[arg-type]
    torch.testing.assert_close(flat, rows.reshape(-1))
    loop = _rtg_loop(reward.reshape(1, -1), done.reshape(1, -1), 0.8, discounting == "absolute")
    close(flat, loop.reshape(-1))


def test_backward_recursions() -> None:
    """Relative: G_t = r_t + γ G_{t+1}; absolute: G_t = γ^k r_t + G_{t+1}."""
    reward, done = _data(n=1, t=12, seed=2)
    done[:] = False
    gamma = 0.7
    rel = reward_to_go(reward, done, gamma)[0]
    ab = reward_to_go(reward, done, gamma, discounting="absolute")[0]
    r = reward[0]
    for t in range(11):
        assert rel[t].item() == pytest.approx(r[t].item() + gamma * rel[t + 1].item(), abs=1e-5)
        assert ab[t].item() == pytest.approx(gamma**t * r[t].item() + ab[t + 1].item(), abs=1e-5)


def test_conventions_coincide_for_gamma_one() -> None:
    reward, done = _data(seed=3)
    torch.testing.assert_close(reward_to_go(reward, done, 1.0), reward_to_go(reward, done, 1.0,
                                                                              discounting="absolute"))


def test_bootstrap_enters_at_the_episode_end_only() -> None:
    reward, done = _data(seed=4)
    boot = torch.randn(reward.shape, generator=torch.Generator().manual_seed(5)) * done  # only read at ends
    for discounting in ("relative", "absolute"):
        got = reward_to_go(reward, done, 0.95, discounting=discounting, bootstrap=boot)  # type: ignore[arg-type]
        close(got, _rtg_loop(reward, done, 0.95, discounting == "absolute", boot))


def test_episode_return_is_the_discounted_sum_from_the_start_broadcast() -> None:
    reward, done = _data(seed=6)
    got = episode_return(reward, done, 0.9)
    for i in range(reward.shape[0]):
        for ep in _episodes(done[i].tolist()):
            g = sum(0.9 ** (k - ep[0]) * reward[i, k].item() for k in ep)
            for t in ep:
                assert got[i, t].item() == pytest.approx(g, abs=1e-5)


def test_segment_helpers_equal_loops() -> None:
    x, done = _data(seed=7)
    csum, esum = episode_cumsum(x, done), episode_sum(x, done)
    step, start = episode_timestep(done), episode_starts(done)
    for i in range(x.shape[0]):
        for ep in _episodes(done[i].tolist()):
            assert start[i, ep[0]] and not any(start[i, t] for t in ep[1:])
            for j, t in enumerate(ep):
                assert step[i, t].item() == j
                assert csum[i, t].item() == pytest.approx(x[i, ep[0] : t + 1].sum().item(), abs=1e-6)
                assert esum[i, t].item() == pytest.approx(x[i, ep].sum().item(), abs=1e-6)


def test_episode_index_with_padding_mask() -> None:
    done = torch.tensor([0, 1, 0, 0, 1, 1, 1, 0, 1], dtype=torch.bool)
    mask = torch.tensor([1, 1, 1, 1, 1, 0, 0, 1, 1], dtype=torch.bool)  # two padding steps after episode 1
    assert episode_index(done).tolist() == [0, 0, 1, 1, 1, 2, 3, 4, 4]
    assert episode_index(done, mask).tolist() == [0, 0, 1, 1, 1, 1, 1, 2, 2]


def _two_step_mdp() -> dict[str, torch.Tensor]:
    """A 2-step MDP with 3 actions per step: s1 depends on a0; every (a0, a1) path is one trajectory."""
    g = torch.Generator().manual_seed(11)
    return {"feat0": torch.randn(4, generator=g), "feat1": torch.randn(3, 4, generator=g),
            "reward": torch.randn(2, 3, 3, generator=g) * 2, "theta": torch.randn(4, 3, generator=g) * 0.5}


def _enumerate(m: dict[str, torch.Tensor], gamma: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(probabilities [9], whole-return estimator [9, P], reward-to-go estimator [9, P]) of every trajectory."""
    probs, full, rtg = [], [], []
    for a0, a1 in itertools.product(range(3), range(3)):
        theta = m["theta"].clone().requires_grad_(True)
        lp0 = torch.log_softmax(m["feat0"] @ theta, -1)[a0]
        lp1 = torch.log_softmax(m["feat1"][a0] @ theta, -1)[a1]
        r0, r1 = m["reward"][0, a0, 0], m["reward"][1, a0, a1]  # r_0 may not depend on the later a_1
        reward, done = torch.tensor([[r0, r1]]), torch.tensor([[False, True]])
        ret = episode_return(reward, done, gamma)[0]
        togo = reward_to_go(reward, done, gamma, discounting="absolute")[0]
        (g0,) = torch.autograd.grad(lp0, theta, retain_graph=True)
        (g1,) = torch.autograd.grad(lp1, theta)
        probs.append((lp0 + lp1).exp().detach())
        full.append(((g0 + g1) * ret[0]).reshape(-1))
        rtg.append((g0 * togo[0] + g1 * togo[1]).reshape(-1))
    return torch.stack(probs).double(), torch.stack(full).double(), torch.stack(rtg).double()


def test_reward_to_go_is_unbiased_and_lower_variance_exactly() -> None:
    """Enumerating every trajectory: Σ_t ∇log π_t G(τ) and Σ_t ∇log π_t Σ_{k≥t} γ^k r_k have the same mean (the
    past-reward term has expectation 0, Rossi eq. 3.24) and reward-to-go has the smaller total variance
   . With γ < 1 this holds for the seed's *absolute* exponent (eq. 3.26); the relative one
    (eq. 3.28) estimates the gradient of a differently weighted objective."""
    p, full, rtg = _enumerate(_two_step_mdp(), 0.9)
    assert p.sum().item() == pytest.approx(1.0, abs=1e-6)
    mean_full, mean_rtg = (p[:, None] * full).sum(0), (p[:, None] * rtg).sum(0)
    torch.testing.assert_close(mean_full, mean_rtg, atol=1e-6, rtol=1e-6)
    var_full = (p[:, None] * (full - mean_full) ** 2).sum()
    var_rtg = (p[:, None] * (rtg - mean_rtg) ** 2).sum()
    assert var_rtg < var_full
