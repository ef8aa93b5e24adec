"""KL-penalty PPO: the multiplier updates move the right way by the right amount, the
penalised loss equals TorchRL's ``KLPENPPOLoss`` on the same batch, its gradient at θ' = θ is the vanilla PG,
and the module measures the update's KL over the whole rollout in the configured direction."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import NormalParamExtractor, TensorDictModule
from torch import nn
from torchrl.modules import IndependentNormal, ProbabilisticActor
from torchrl.objectives import KLPENPPOLoss

from lrl.algos.ppo_kl.loss import adaptive_kl_coef, dual_ascent_kl_coef, ppo_kl_loss
from lrl.algos.ppo_kl.module import PPOKL
from lrl.networks import GaussianHead
from lrl.spec import EnvSpec

CARTPOLE = EnvSpec("CartPole-v1", (4,), "discrete", 2)
PENDULUM = EnvSpec("Pendulum-v1", (3,), "continuous", 1, (-2.0,), (2.0,))


@pytest.mark.parametrize(("kl", "expected"), [(0.02, 2.0), (0.015, 2.0), (0.01, 1.0), (0.0101, 1.0),
                                              (0.01 / 1.5, 0.5), (0.005, 0.5), (0.0, 0.5)])
def test_adaptive_rule_table(kl: float, expected: float) -> None:
    """KL = 2δ doubles β, KL = δ keeps it, KL = δ/2 halves it; the thresholds 1.5δ and δ/1.5 are inclusive."""
    assert adaptive_kl_coef(1.0, kl, 0.01) == expected
    assert adaptive_kl_coef(3.0, kl, 0.01) == 3.0 * expected


def test_dual_ascent_moves_by_exactly_alpha_times_constraint_violation() -> None:
    for kl in (0.0, 0.005, 0.01, 0.03):
        new = dual_ascent_kl_coef(0.5, kl, 0.01, lr=10.0)
        assert new == 0.5 + 10.0 * (kl - 0.01)
        assert (new > 0.5) == (kl > 0.01) and (new < 0.5) == (kl < 0.01)
    assert dual_ascent_kl_coef(0.01, 0.0, 0.01, lr=10.0) == pytest.approx(-0.09)  # Atreya: no projection
    assert dual_ascent_kl_coef(0.01, 0.0, 0.01, lr=10.0, project=True) == 0.0  # projected onto λ ≥ 0


def test_penalised_loss_gradient_at_old_policy_is_vanilla_pg_in_both_directions() -> None:
    torch.manual_seed(0)
    head = GaussianHead(4, 2)
    feats = torch.randn(32, 4)
    params = head(feats)
    old = tuple(t.detach() for t in params)
    action = head.sample(old)
    adv = torch.randn(32)
    logp = head.log_prob(params, action)
    for kl in (head.kl(old, params), head.kl(params, old)):
        out = ppo_kl_loss(logp, logp.detach(), adv, kl, head.entropy(params), torch.zeros(32), torch.zeros(32),
                          kl_coef=5.0, vf_coef=0.0, ent_coef=0.0)
        assert out["kl"].item() == 0.0 and out["kl_penalty"].item() == 0.0
        grads = torch.autograd.grad(out["loss"], list(head.parameters()), retain_graph=True)
        pg = torch.autograd.grad(-(logp * adv).mean(), list(head.parameters()), retain_graph=True)
        for a, b in zip(grads, pg, strict=True):
            torch.testing.assert_close(a, b)


def test_equals_torchrl_klpen_ppo_loss_and_its_beta_update() -> None:
    torch.manual_seed(3)
    obs_dim, act_dim, n = 4, 2, 64
    actor_net = nn.Sequential(nn.Linear(obs_dim, 2 * act_dim), NormalParamExtractor())
    actor = ProbabilisticActor(TensorDictModule(actor_net, ["observation"], ["loc", "scale"]),
                               in_keys=["loc", "scale"], distribution_class=IndependentNormal, return_log_prob=True)
    critic_net = nn.Linear(obs_dim, 1)
    critic = TensorDictModule(critic_net, ["observation"], ["state_value"])
    obs = torch.randn(n, obs_dim)
    with torch.no_grad():
        loc, scale = actor_net(obs)
        old_loc, old_scale = loc + 0.3 * torch.randn(n, act_dim), scale * torch.exp(0.2 * torch.randn(n, act_dim))
        action = old_loc + old_scale * torch.randn(n, act_dim)
        old_logp = torch.distributions.Normal(old_loc, old_scale).log_prob(action).sum(-1)
    adv, target = torch.randn(n), torch.randn(n)
    td = TensorDict({"observation": obs, "action": action, "sample_log_prob": old_logp, "action_log_prob": old_logp,
                     "loc": old_loc, "scale": old_scale, "advantage": adv[:, None], "value_target": target[:, None]},
                    [n])
    loss = KLPENPPOLoss(actor, critic, dtarg=0.01, beta=0.7, entropy_bonus=False, critic_coeff=0.5,
                        loss_critic_type="l2", normalize_advantage=False)
    theirs = loss(td)
    loc, scale = actor_net(obs)
    head = GaussianHead(1, act_dim)
    old, new = (old_loc, old_scale.log()), (loc, scale.log())  # the head's (mean, log-std) parametrisation
    ours = ppo_kl_loss(head.log_prob(new, action), old_logp, adv, head.kl(old, new), head.entropy(new),
                       critic_net(obs).squeeze(-1), target, kl_coef=0.7, vf_coef=0.5, ent_coef=0.0)
    torch.testing.assert_close(ours["policy"] + ours["kl_penalty"], theirs["loss_objective"])
    torch.testing.assert_close(ours["kl"], theirs["kl"].mean())
    torch.testing.assert_close(0.5 * ours["value"], theirs["loss_critic"])
    kl = ours["kl"].item()
    assert kl > 1.5 * 0.01  # TorchRL doubled β for this batch; the seeds' rule does the same
    assert loss.beta.item() == pytest.approx(adaptive_kl_coef(0.7, kl, 0.01))


def _rollout(m: PPOKL, spec: EnvSpec) -> TensorDict:
    gen = torch.Generator().manual_seed(0)
    obs = torch.randn(2, 16, spec.obs_dim, generator=gen)
    td = TensorDict({"observation": obs}, [2, 16])
    with torch.no_grad():
        for i, p in enumerate(m.net.policy_params(obs)):
            td.set(("old_dist", str(i)), p.clone())
    return td


@pytest.mark.parametrize("spec", [CARTPOLE, PENDULUM], ids=["categorical", "gaussian"])
def test_module_updates_the_multiplier_from_the_kl_of_the_whole_update(spec: EnvSpec) -> None:
    torch.manual_seed(1)
    m = PPOKL(spec, kl_coef=1.0, kl_target=0.01, ortho_init=False)
    td = _rollout(m, spec)
    m._update_kl_coef(td)  # θ unchanged: KL 0 ≤ δ/1.5 → β halves
    assert m.kl_coef.item() == 0.5 and m._sums["stats/kl"].item() == 0.0
    with torch.no_grad():
        for p in [*m.net.actor_body.parameters(), *m.net.head.parameters()]:  # log-std too: KL asymmetric
            p.add_(0.5 * torch.randn_like(p))
    old = m._old(td)
    obs = td["observation"].flatten(0, 1)
    expected = m.net.head.kl(tuple(p.flatten(0, 1) for p in old), m.net.policy_params(obs)).mean().item()
    assert expected > 0.015
    m._update_kl_coef(td)  # KL ≥ 1.5 δ → β doubles
    assert m.kl_coef.item() == 1.0
    assert m._sums["stats/kl"].item() == pytest.approx(expected)

    dual = PPOKL(spec, kl_coef=1.0, kl_coef_update="dual", kl_target=0.01, dual_lr=10.0, ortho_init=False)
    assert dual.kl_direction == "new_old" and m.kl_direction == "old_new"  # the sources' directions
    dual.load_state_dict(m.state_dict())
    reverse = dual.net.head.kl(dual.net.policy_params(obs), tuple(p.flatten(0, 1) for p in old)).mean().item()
    assert reverse != pytest.approx(expected)  # the KL is not symmetric: the direction matters
    dual._update_kl_coef(td)
    assert dual.kl_coef.item() == pytest.approx(1.0 + 10.0 * (reverse - 0.01), rel=1e-5)
    fixed = PPOKL(spec, kl_coef=0.3, kl_coef_update="fixed")
    fixed._update_kl_coef(_rollout(fixed, spec))
    assert fixed.kl_coef.item() == pytest.approx(0.3)


def test_process_rollout_keeps_a_copy_of_the_old_policy() -> None:
    """π_θk must stay fixed while θ moves: the Gaussian's log-std parameters are a view of θ, so they are copied."""
    m = PPOKL(PENDULUM)
    obs = torch.randn(2, 8, 3)
    flag = torch.zeros(2, 8, 1, dtype=torch.bool)
    td = TensorDict({"observation": obs, "next": {"observation": obs, "reward": torch.randn(2, 8, 1),
                                                  "terminated": flag, "truncated": flag, "done": flag}}, [2, 8])
    td = m.process_rollout(td)
    before = td["old_dist", "1"].clone()
    with torch.no_grad():
        m.net.head.log_std.add_(1.0)  # type: ignore[operator]
    assert torch.equal(td["old_dist", "1"], before)
    torch.testing.assert_close(td["advantage"] + m.net.value(obs).detach(), td["value_target"])
