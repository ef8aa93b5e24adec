"""GAE, TD errors and discounted returns against slow reference loops and TorchRL."""

from __future__ import annotations

import torch
from tensordict import TensorDict
from torchrl.objectives.value.functional import generalized_advantage_estimate

from lrl.estimators import annotate_gae, discounted_returns, explained_variance, gae, td_error


def _rollout(n: int = 3, t: int = 12, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    terminated = torch.rand(n, t, generator=g) < 0.15
    truncated = (torch.rand(n, t, generator=g) < 0.1) & ~terminated
    done = terminated | truncated
    value = torch.randn(n, t, generator=g)
    # as in a real rollout: V(next obs) is V of the following step's obs unless the episode ended there
    next_value = torch.randn(n, t, generator=g)
    next_value[:, :-1] = torch.where(done[:, :-1], next_value[:, :-1], value[:, 1:])
    return {"reward": torch.randn(n, t, generator=g), "value": value, "next_value": next_value,
            "terminated": terminated, "done": done}


def _gae_direct(r: dict[str, torch.Tensor], gamma: float, lam: float) -> torch.Tensor:
    """Â_t = Σ_l (γλ)^l δ_{t+l}, summed explicitly until the episode (or the rollout) ends."""
    delta = td_error(r["reward"], r["value"], r["next_value"], r["terminated"], gamma)
    n, t = delta.shape
    out = torch.zeros(n, t)
    for i in range(n):
        for s in range(t):
            total, w = 0.0, 1.0
            for k in range(s, t):
                total += w * delta[i, k].item()
                if r["done"][i, k]:
                    break
                w *= gamma * lam
            out[i, s] = total
    return out


def test_gae_equals_direct_sum() -> None:
    r = _rollout()
    torch.testing.assert_close(gae(**r, gamma=0.97, lam=0.9), _gae_direct(r, 0.97, 0.9))


def test_gae_lambda_zero_is_td_error() -> None:
    r = _rollout(seed=1)
    expected = td_error(r["reward"], r["value"], r["next_value"], r["terminated"], 0.99)
    torch.testing.assert_close(gae(**r, gamma=0.99, lam=0.0), expected)


def test_gae_lambda_one_is_bootstrapped_return_minus_value() -> None:
    r = _rollout(seed=2)
    # the return is cut at episode ends and at the rollout end, bootstrapping V(next obs) unless terminated
    boot = r["next_value"] * (~r["terminated"]).float()
    returns = discounted_returns(r["reward"], r["done"], 0.95, bootstrap=boot)
    torch.testing.assert_close(gae(**r, gamma=0.95, lam=1.0), returns - r["value"], atol=1e-5, rtol=1e-5)


def test_gae_matches_torchrl() -> None:
    r = _rollout(n=4, t=20, seed=3)
    ours = gae(**r, gamma=0.98, lam=0.8)
    theirs, _ = generalized_advantage_estimate(
        0.98, 0.8, r["value"].unsqueeze(-1), r["next_value"].unsqueeze(-1), r["reward"].unsqueeze(-1),
        r["done"].unsqueeze(-1), r["terminated"].unsqueeze(-1))
    torch.testing.assert_close(ours, theirs.squeeze(-1), atol=1e-5, rtol=1e-5)


def test_truncation_bootstraps_and_termination_does_not() -> None:
    reward = torch.tensor([[1.0]])
    value = torch.tensor([[0.0]])
    next_value = torch.tensor([[10.0]])
    done = torch.tensor([[True]])
    truncated = gae(reward, value, next_value, torch.tensor([[False]]), done, gamma=0.9, lam=0.95)
    terminated = gae(reward, value, next_value, torch.tensor([[True]]), done, gamma=0.9, lam=0.95)
    assert truncated.item() == 1.0 + 0.9 * 10.0
    assert terminated.item() == 1.0


def test_episode_boundaries_do_not_leak() -> None:
    r = _rollout(n=1, t=6, seed=4)
    r["done"][:] = False
    r["terminated"][:] = False
    r["done"][0, 2] = r["terminated"][0, 2] = True
    before = gae(**r, gamma=0.99, lam=0.95)[0, :3].clone()
    r["reward"][0, 3:] += 100.0  # rewards after the episode end must not change earlier advantages
    torch.testing.assert_close(gae(**r, gamma=0.99, lam=0.95)[0, :3], before)


def test_discounted_returns_matches_loop() -> None:
    g = torch.Generator().manual_seed(5)
    reward = torch.randn(2, 15, generator=g)
    done = torch.rand(2, 15, generator=g) < 0.2
    out = discounted_returns(reward, done, 0.9)
    for i in range(2):
        for t in range(15):
            total, w = 0.0, 1.0
            for k in range(t, 15):
                total += w * reward[i, k].item()
                if done[i, k]:
                    break
                w *= 0.9
            assert abs(out[i, t].item() - total) < 1e-5


def test_annotate_gae_writes_values_advantages_and_targets() -> None:
    g = torch.Generator().manual_seed(0)
    n, t = 2, 6  # envs × time, time last (the collectors' layout)
    done = torch.zeros(n, t, 1, dtype=torch.bool)
    done[0, 2] = True
    td = TensorDict({"observation": torch.randn(n, t, 3, generator=g),
                     "next": {"observation": torch.randn(n, t, 3, generator=g),
                              "reward": torch.randn(n, t, 1, generator=g), "terminated": done.clone(),
                              "done": done.clone()}}, batch_size=[n, t])
    w = torch.randn(3, generator=g)

    def value_fn(obs: torch.Tensor) -> torch.Tensor:
        return obs @ w

    ev = annotate_gae(td, value_fn, 0.9, 0.8)
    v, nv = value_fn(td["observation"]), value_fn(td["next", "observation"])
    adv = gae(td["next", "reward"].squeeze(-1), v, nv, done.squeeze(-1), done.squeeze(-1), 0.9, 0.8)
    torch.testing.assert_close(td["value"], v)
    torch.testing.assert_close(td["advantage"], adv)
    torch.testing.assert_close(td["value_target"], adv + v)
    torch.testing.assert_close(ev, 1 - adv.var() / (adv + v).var())


def test_explained_variance_extremes() -> None:
    target = torch.tensor([1.0, 2.0, 4.0])
    assert explained_variance(target, target) == 1.0
    assert explained_variance(torch.full_like(target, target.mean()), target) == 0.0
