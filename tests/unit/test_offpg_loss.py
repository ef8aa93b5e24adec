"""Off-policy PG: every kind reduces to REINFORCE's Φ on-policy, the module's weights are exactly
1 when β = θ, Alg. 4.1's ratio surrogate has the same gradient, the per-decision Ψ is eq. 4.4 summed by hand, the
exact kinds are unbiased by enumeration, and clipping."""

from __future__ import annotations

import itertools

import pytest
import torch

from lrl.algos.offpg.loss import off_policy_advantages
from lrl.algos.offpg.module import OffPolicyPG
from lrl.data.collector import VecEnvCollector
from lrl.data.env import make_vec_env, probe_env_spec
from lrl.errors import RecipeError
from lrl.estimators.losses import policy_gradient_loss
from lrl.estimators.monte_carlo import monte_carlo_returns
from lrl.recipe.schema import EnvConfig

KINDS = ["trajectory", "per_decision", "current", "first_order"]


def _episode_data(seed: int = 0, n: int = 2, t: int = 9) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    done = torch.rand(n, t, generator=g) < 0.3
    done[:, -1] = True
    return {"reward": torch.randn(n, t, generator=g), "done": done, "baseline": torch.randn(n, t, generator=g),
            "log_ratio": torch.randn(n, t, generator=g) * 0.3, "bootstrap": torch.zeros(n, t)}


def _psi(d: dict[str, torch.Tensor], kind: str, log_ratio: torch.Tensor, gamma: float = 0.9,
         discounting: str = "relative", **kw: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    returns, _, _ = monte_carlo_returns(d["reward"], d["done"], gamma, returns="reward_to_go",
                                        discounting=discounting)  # type: ignore[arg-type]
    return off_policy_advantages(log_ratio, d["done"], kind=kind, returns=returns,  # type: ignore[arg-type]
                                 baseline=d["baseline"], reward=d["reward"], bootstrap=d["bootstrap"],
                                 gamma=gamma, discounting=discounting, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", KINDS)
def test_on_policy_every_kind_is_reinforce(kind: str) -> None:
    d = _episode_data()
    psi, w, _ = _psi(d, kind, torch.zeros_like(d["log_ratio"]))
    returns, _, _ = monte_carlo_returns(d["reward"], d["done"], 0.9, returns="reward_to_go", discounting="relative")
    assert torch.equal(w, torch.ones_like(w))
    torch.testing.assert_close(psi, returns - d["baseline"])


def test_per_decision_is_eq_4_4_summed_by_hand() -> None:
    """Ψ_t = Σ_{l=t}^{end} γ^{l−t} r_l Π_{t'=start}^{l} ρ_t' − W_t b_t (Rossi eq. 4.4; Atreya eq. 35)."""
    d = _episode_data(seed=1)
    psi, _, _ = _psi(d, "per_decision", d["log_ratio"], gamma=0.8)
    rho = d["log_ratio"].double().exp()
    for i in range(2):
        start = 0
        for t in range(9):
            end = t
            while not d["done"][i, end]:
                end += 1
            total = sum(0.8 ** (k - t) * d["reward"][i, k].item() * rho[i, start : k + 1].prod().item()
                        for k in range(t, end + 1))
            total -= rho[i, start : t + 1].prod().item() * d["baseline"][i, t].item()
            assert psi[i, t].item() == pytest.approx(total, rel=1e-4, abs=1e-5)
            if d["done"][i, t]:
                start = t + 1


def test_first_order_matches_algorithm_4_1_ratio_surrogate() -> None:
    """Alg. 4.1: ĝ = Σ_t ρ_t ∇log π_θ(a_t|s_t) G_t, the gradient of −Σ ρ_t(θ) G_t with β detached."""
    g = torch.Generator().manual_seed(2)
    theta = torch.randn(3, 4, generator=g, requires_grad=True)
    s, a = torch.randn(7, 3, generator=g), torch.randint(0, 4, (7,), generator=g)
    logp_beta = torch.log_softmax(s @ (theta.detach() + 0.3 * torch.randn(3, 4, generator=g)), -1)
    logp_beta = logp_beta.gather(-1, a[:, None]).squeeze(-1)
    d = _episode_data(seed=3, n=1, t=7)
    logp = torch.log_softmax(s @ theta, -1).gather(-1, a[:, None]).squeeze(-1)
    psi, _, _ = _psi(d, "first_order", (logp.detach() - logp_beta)[None])
    (ours,) = torch.autograd.grad(policy_gradient_loss(logp, psi[0], torch.ones(7), 1), theta, retain_graph=True)
    returns, _, _ = monte_carlo_returns(d["reward"], d["done"], 0.9, returns="reward_to_go", discounting="relative")
    ratio = torch.exp(logp - logp_beta)
    (alg,) = torch.autograd.grad(-(ratio * (returns - d["baseline"])[0]).sum(), theta)
    torch.testing.assert_close(ours, alg)


@pytest.mark.parametrize("kind", ["trajectory", "per_decision"])
def test_exact_kinds_are_unbiased_by_enumeration(kind: str) -> None:
    """E_β[Σ_t ∇log π_θ(a_t|s_t) Ψ_t] = E_θ[Σ_t ∇log π_θ(a_t|s_t) Σ_{k≥t} γ^k r_k] on a 3-step MDP with 2 actions,
    with a state baseline (Rossi eq. 4.3, 4.4; absolute discounting makes the target the exact gradient)."""
    g = torch.Generator().manual_seed(4)
    kw = {"generator": g, "dtype": torch.float64}
    feats = torch.randn(3, 8, 3, **kw)  # type: ignore[arg-type]  # step, history index, feature
    rewards = torch.randn(3, 8, **kw)  # type: ignore[arg-type]
    theta = torch.randn(3, 2, **kw).requires_grad_(True)  # type: ignore[arg-type]
    beta = theta.detach() + 0.5 * torch.randn(3, 2, **kw)  # type: ignore[arg-type]
    gamma = 0.9
    on = torch.zeros(6, dtype=torch.float64)
    off = torch.zeros(6, dtype=torch.float64)
    for path in itertools.product(range(2), repeat=3):
        hist = [0, 1 + path[0], 3 + 2 * path[0] + path[1]]  # distinct states per history (a tree)
        lp = torch.stack([torch.log_softmax(feats[t, hist[t]] @ theta, -1)[path[t]] for t in range(3)])
        lb = torch.stack([torch.log_softmax(feats[t, hist[t]] @ beta, -1)[path[t]] for t in range(3)])
        r = torch.stack([rewards[t, hist[t] + path[t]] for t in range(3)])[None]
        done = torch.tensor([[False, False, True]])
        d = {"reward": r, "done": done, "baseline": torch.stack([feats[t, hist[t], 0] for t in range(3)])[None],
             "bootstrap": torch.zeros(1, 3, dtype=torch.float64)}
        psi, _, _ = _psi(d, kind, (lp - lb).detach()[None], gamma=gamma, discounting="absolute")
        target, _, _ = monte_carlo_returns(r, done, gamma, returns="reward_to_go", discounting="absolute")
        scores = [torch.autograd.grad(lp[t], theta, retain_graph=True)[0].reshape(-1) for t in range(3)]
        p_theta, p_beta = lp.sum().exp().item(), lb.sum().exp().item()
        on += p_theta * sum(scores[t] * target[0, t] for t in range(3))
        off += p_beta * sum(scores[t] * psi[0, t].double() for t in range(3))
    torch.testing.assert_close(off, on, atol=1e-5, rtol=1e-4)


def test_clipping_truncates_and_reports() -> None:
    d = _episode_data(seed=5)
    log_ratio = torch.full_like(d["log_ratio"], 0.5)
    psi, w, clipped = _psi(d, "first_order", log_ratio, max_weight=1.2)
    assert torch.equal(w, torch.full_like(w, 1.2)) and clipped.all()
    returns, _, _ = monte_carlo_returns(d["reward"], d["done"], 0.9, returns="reward_to_go", discounting="relative")
    torch.testing.assert_close(psi, 1.2 * (returns - d["baseline"]))


@pytest.mark.parametrize("kind", KINDS)
def test_module_weights_are_exactly_one_when_behaviour_is_the_policy(kind: str) -> None:
    """A real rollout collected by the module's behaviour copy, annotated by process_rollout: at β = θ every
    weight is exactly 1 and Ψ is REINFORCE's Φ = returns − baseline."""
    torch.manual_seed(0)
    cfg = EnvConfig(id="CartPole-v1", num_envs=3)
    spec = probe_env_spec(cfg)
    m = OffPolicyPG(spec, hidden=[16], importance=kind, baseline="value",  # type: ignore[arg-type]
                    returns="episode" if kind == "trajectory" else "reward_to_go")
    c = VecEnvCollector(make_vec_env(cfg, 3), spec, m.collection_policy(), steps_per_env=40,
                        env_seeds=[0, 1, 2], complete_episodes=True)
    flat = m.process_rollout(c.rollout()).reshape(-1)
    logp, _ = m._log_prob(m.policy, flat["observation"], flat["action"])
    psi, w, clipped = m.weights(flat, logp)
    assert torch.equal(w, torch.ones_like(w)) and not clipped.any()
    torch.testing.assert_close(psi, flat["returns"] - flat["baseline"])
    with torch.no_grad():  # once θ moves away from β the weights are not 1 any more
        for p in m.policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    logp, _ = m._log_prob(m.policy, flat["observation"], flat["action"])
    _, w, _ = m.weights(flat, logp)
    assert not torch.equal(w[flat["mask"]], torch.ones_like(w[flat["mask"]]))


def test_bad_combinations_are_one_clear_error() -> None:
    spec = probe_env_spec(EnvConfig(id="CartPole-v1"))
    for kw, message in (({"returns": "episode", "importance": "first_order"}, "importance=trajectory"),
                        ({"sync_every": 0}, "sync_every")):
        with pytest.raises(RecipeError) as err:
            OffPolicyPG(spec, **kw)  # type: ignore[arg-type]
        assert message in err.value.message and "\n" not in err.value.message
