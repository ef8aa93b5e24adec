"""Learning from preferences (Rossi ch. 14, Christiano et al. 2017; docs/rlhf.md): the Bradley-Terry loss against
hand numbers, the reward model's refinements, the synthetic annotator, segment cutting, the relabel hook against a
hand loop, and a poison test: the environment's reward never reaches the policy's loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tensordict import TensorDict

from lrl.recipe.schema import EnvConfig, RlhfConfig
from lrl.rlhf.annotators import SyntheticAnnotator
from lrl.rlhf.learner import PreferenceLearner, cut_segments, pearson
from lrl.rlhf.loss import bradley_terry_loss, disagreement, preference_prob, segment_returns
from lrl.rlhf.reward_model import Pairs, RewardEnsemble, RewardModel, features
from lrl.rlhf.store import PreferenceStore
from lrl.spec import Spec

CARTPOLE = Spec(id="CartPole-v1", obs_shape=(4,), action_kind="discrete", action_dim=2)


# --- the loss ---------------------------------------------------------------------------------------------------
def test_preference_prob_is_sigmoid_of_difference_and_complementary():
    r1, r2 = torch.tensor([2.0, -1.0, 0.3]), torch.tensor([0.5, 4.0, 0.3])
    p12 = preference_prob(r1, r2)
    hand = torch.tensor([math.exp(2) / (math.exp(2) + math.exp(0.5)), math.exp(-1) / (math.exp(-1) + math.exp(4)),
                         0.5])
    torch.testing.assert_close(p12, hand)
    torch.testing.assert_close(p12 + preference_prob(r2, r1), torch.ones(3))
    torch.testing.assert_close(segment_returns(torch.tensor([[1.0, 2.0, 3.0]])), torch.tensor([6.0]))


def test_loss_equals_bce_with_logits_on_hand_numbers():
    r1, r2 = torch.tensor([2.0, 2.0, 0.0]), torch.tensor([0.5, 0.5, 1.0])
    mu1 = torch.tensor([1.0, 0.5, 0.0])
    # -[mu1 log sigmoid(d) + (1 - mu1) log sigmoid(-d)], d = R1 - R2
    hand = [math.log(1 + math.exp(-1.5)), 0.5 * math.log(1 + math.exp(-1.5)) + 0.5 * math.log(1 + math.exp(1.5)),
            math.log(1 + math.exp(-1.0))]
    torch.testing.assert_close(bradley_terry_loss(r1, r2, mu1, reduction="none"), torch.tensor(hand))
    torch.testing.assert_close(bradley_terry_loss(r1, r2, mu1), torch.tensor(hand).mean())
    torch.testing.assert_close(bradley_terry_loss(r1, r2, mu1, reduction="none"),
                               torch.nn.BCEWithLogitsLoss(reduction="none")(r1 - r2, mu1))


def test_equal_label_is_minimised_at_equal_returns_with_zero_gradient():
    r1 = torch.tensor(1.7, requires_grad=True)
    r2 = torch.tensor(1.7, requires_grad=True)
    loss = bradley_terry_loss(r1, r2, torch.tensor(0.5))
    loss.backward()
    assert r1.grad == 0 and r2.grad == 0
    assert abs(loss.item() - math.log(2)) < 1e-6
    for d in (-1.0, -0.1, 0.1, 1.0):
        assert bradley_terry_loss(torch.tensor(1.7 + d), torch.tensor(1.7), torch.tensor(0.5)) > loss


def test_loss_invariant_to_a_constant_added_to_rewards():
    g = torch.Generator().manual_seed(0)
    rew1, rew2 = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    mu1 = torch.tensor([1.0, 0.0, 0.5, 1.0, 0.0])
    base = bradley_terry_loss(segment_returns(rew1), segment_returns(rew2), mu1)
    for c in (-3.0, 0.25, 100.0):
        shifted = bradley_terry_loss(segment_returns(rew1 + c), segment_returns(rew2 + c), mu1)
        torch.testing.assert_close(shifted, base)


# --- the reward model -------------------------------------------------------------------------------------------
def test_linear_reward_recovered_from_synthetic_preferences():
    rng = np.random.default_rng(0)
    d, k, n = 4, 10, 400
    w = np.array([1.0, -2.0, 0.5, 0.0])
    x = rng.normal(size=(2 * n, k, d)).astype(np.float32)
    ret = (x @ w).sum(-1)
    annot = SyntheticAnnotator(seed=0)
    labels = [annot.label(ret[2 * i], ret[2 * i + 1]) for i in range(n)]
    mu = torch.tensor([{"left": 1.0, "right": 0.0, "equal": 0.5}[lab] for lab in labels])
    xt = torch.as_tensor(x)
    no = torch.zeros(n, k, dtype=torch.bool)
    model = RewardModel(d, members=1, hidden=[32], lr=3e-3, l2=0.0, adapt_l2=False, seed=0)
    model.fit(Pairs(xt[0::2], no, xt[1::2], no, mu), Pairs(xt[:0], no[:0], xt[:0], no[:0], mu[:0]), epochs=30)
    test = torch.as_tensor(rng.normal(size=(2000, d)).astype(np.float32))
    model.net.normalise(test)
    corr = pearson(model.net(test).detach(), test @ torch.as_tensor(w, dtype=torch.float32))
    assert corr > 0.9, corr


def test_each_member_normalised_to_zero_mean_unit_std_on_reference():
    torch.manual_seed(0)
    net = RewardEnsemble(5, members=4, hidden=[16], dropout=0.0)
    ref = torch.randn(300, 5) * 3 + 1
    net.normalise(ref)
    raw = net.raw(ref)
    z = (raw - net.mean[:, None]) / net.std[:, None]
    torch.testing.assert_close(z.mean(1), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(1, unbiased=False), torch.ones(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(net(ref), z.mean(0))  # r̂ is the mean of the normalised members


def test_disagreement_ranks_by_minority_fraction_then_variance():
    # 3 members x 4 pairs of returns: pair 0 all agree, pair 1 one member dissents, pair 2 one dissents with
    # larger spread of P̂, pair 3 all agree
    r1 = torch.tensor([[1.0, 1.0, 1.0, 5.0], [1.0, 1.0, 3.0, 5.0], [1.0, -1.0, -3.0, 5.0]])
    r2 = torch.zeros(3, 4)
    minority, var = disagreement(r1, r2)
    torch.testing.assert_close(minority, torch.tensor([0.0, 1 / 3, 1 / 3, 0.0]))
    p = torch.sigmoid(r1)
    torch.testing.assert_close(var, p.var(0, unbiased=False))
    # rank on the hand returns: the two one-dissent pairs first (pair 2's P̂ spread is larger), then the agreed
    order = torch.argsort(minority * 10 + var, descending=True, stable=True)
    assert order.tolist()[:2] == [2, 1]


def test_rank_disagreement_on_members_with_known_outputs():
    model = RewardModel(1, members=3, hidden=[1], seed=0)
    scale = [1.0, 1.0, -1.0]  # member i returns scale_i * x (x > 0 passes the LeakyReLU unchanged)
    with torch.no_grad():
        for m, s in zip(model.net.members, scale, strict=True):
            m[0].weight.fill_(1.0)
            m[0].bias.zero_()
            m[-1].weight.fill_(s)
            m[-1].bias.zero_()
    # pair 0: x1 = 2 vs x2 = 1 -> members +,+,- : 1 of 3 dissents; pair 1: x1 = 1 vs x2 = 1 -> all tie (no one
    # prefers 1) -> votes 0 -> minority 0
    x1 = torch.tensor([[[2.0]], [[1.0]]])
    x2 = torch.tensor([[[1.0]], [[1.0]]])
    no = torch.zeros(2, 1, dtype=torch.bool)
    assert model.rank_disagreement(x2, no, x1, no).tolist() == [0, 1]
    assert model.rank_disagreement(x1, no, x2, no).tolist() == [0, 1]


def test_adaptive_l2_moves_toward_the_band():
    model = RewardModel(2, members=1, hidden=[4], l2=1.0, seed=0)
    model._adapt(train_loss=1.0, val_loss=2.0)  # val 2x train > 1.5x: more regularisation
    assert model.l2 == pytest.approx(1.1)
    model._adapt(train_loss=1.0, val_loss=1.0)  # below 1.1x: less
    assert model.l2 == pytest.approx(1.0)
    model._adapt(train_loss=1.0, val_loss=1.3)  # in the band: unchanged
    assert model.l2 == pytest.approx(1.0)
    reg = RewardModel(2, members=1, hidden=[4], l2=1.0, l2_target="regularisation", seed=0)
    w = reg.weight_norm().item()
    reg._adapt(train_loss=10 * w, val_loss=float("nan"))  # l2 |W|^2 = w < train loss: raise l2
    assert reg.l2 == pytest.approx(1.1)


def test_absorbing_steps_earn_the_absorbing_reward():
    model = RewardModel(1, members=2, hidden=[4], seed=0)
    with torch.no_grad():
        model.net.absorbing.copy_(torch.tensor([3.0, -1.0]))
    x = torch.randn(1, 4, 1)
    absorbed = torch.tensor([[False, False, True, True]])
    raw = model.net.raw(x)  # [2, 1, 4]
    hand = raw[:, 0, :2].sum(-1) + 2 * torch.tensor([3.0, -1.0])
    torch.testing.assert_close(model.net.segment_returns(x, absorbed)[:, 0], hand)
    model.net.use_absorbing = False  # termination: keep
    torch.testing.assert_close(model.net.segment_returns(x, absorbed)[:, 0], raw[:, 0, :2].sum(-1))


# --- the synthetic annotator ------------------------------------------------------------------------------------
def test_synthetic_annotator_knobs():
    assert SyntheticAnnotator(seed=0).label(3.0, 1.0) == "left"
    assert SyntheticAnnotator(seed=0).label(1.0, 3.0) == "right"
    assert SyntheticAnnotator(equal_threshold=2.0, seed=0).label(3.0, 1.5) == "equal"
    assert SyntheticAnnotator(mistake=1.0, seed=0).label(3.0, 1.0) == "right"
    n = 4000
    skips = [SyntheticAnnotator(skip=0.3, seed=s).label(3.0, 1.0) for s in range(n)]
    assert abs(skips.count("skip") / n - 0.3) < 0.03
    lefts = [SyntheticAnnotator(beta=0.5, seed=s).label(1.0, 0.0) for s in range(n)]
    assert abs(lefts.count("left") / n - 1 / (1 + math.exp(-0.5))) < 0.03
    a, b = SyntheticAnnotator(beta=1.0, seed=7), SyntheticAnnotator(beta=1.0, seed=7)
    assert [a.label(0.2, 0.0) for _ in range(50)] == [b.label(0.2, 0.0) for _ in range(50)]


# --- segments ---------------------------------------------------------------------------------------------------
def test_segments_never_cross_episode_ends_and_pad_terminations():
    t_len, k = 10, 4
    obs = torch.arange(t_len, dtype=torch.float32).view(1, t_len, 1)
    act = torch.zeros(1, t_len, dtype=torch.long)
    reward = torch.ones(1, t_len)
    term = torch.zeros(1, t_len, dtype=torch.bool)
    trunc = torch.zeros(1, t_len, dtype=torch.bool)
    term[0, 2] = True   # episode ends by termination after step 2
    trunc[0, 6] = True  # the next one is truncated after step 6
    done = term | trunc
    segs = cut_segments(obs, act, reward, term, done, k, 100, np.random.default_rng(0), absorbing=True)
    starts = sorted(int(s["obs"][0, 0]) for s in segs)
    # from 0..2: cut short at the termination (padded); 3: 3..6 whole; 4..6 would cross the truncation; 7..9
    # would run past the rollout's end with fewer than k steps: only start 7... no (7,8,9 = 3 steps) -> invalid
    assert starts == [0, 1, 2, 3]
    by_start = {int(s["obs"][0, 0]): s for s in segs}
    assert by_start[0]["absorbed"].tolist() == [False, False, False, True]
    assert by_start[2]["absorbed"].tolist() == [False, True, True, True]
    assert by_start[2]["true_return"] == 1.0 and by_start[3]["true_return"] == 4.0
    assert by_start[3]["absorbed"].tolist() == [False] * 4


# --- the relabel hook and the poison test -----------------------------------------------------------------------
def _cfg(**kw):
    base = {"annotator": "synthetic", "labels": 20, "initial_fraction": 0.5, "window": 8, "segment_length": 4,
            "segments_per_window": 16, "update_every": 10_000, "epochs": 2, "pretrain_epochs": 3, "members": 2,
            "hidden": [8]}
    return RlhfConfig(**{**base, **kw})


def _rollout(reward: float, n: int = 4, t: int = 8, seed: int = 0) -> TensorDict:
    g = torch.Generator().manual_seed(seed)
    term = torch.zeros(n, t, 1, dtype=torch.bool)
    term[0, 3] = term[2, 6] = True
    return TensorDict({
        "observation": torch.randn(n, t, 4, generator=g), "action": torch.randint(2, (n, t), generator=g),
        "next": {"observation": torch.randn(n, t, 4, generator=g), "reward": torch.full((n, t, 1), reward),
                 "terminated": term, "truncated": torch.zeros(n, t, 1, dtype=torch.bool), "done": term.clone()},
    }, batch_size=[n, t])


def _learner(tmp_path, cfg, gamma=0.9):
    env = EnvConfig(id="CartPole-v1")
    return PreferenceLearner(cfg, CARTPOLE, env, tmp_path, seed=0, run_id="run", gamma=gamma, budget=1000)


def test_relabel_hook_matches_a_hand_loop(tmp_path):
    from lrl.algos.ppo.module import PPO

    rl = _learner(tmp_path, _cfg(), gamma=0.9)
    with torch.no_grad():
        rl.model.net.absorbing.copy_(torch.tensor([-3.0, -8.0]))
    rl.model.net.normalise(torch.randn(64, 6))
    module = PPO(CARTPOLE)
    module.attach_reward_learner(rl)
    assert not any("reward" in n or "members" in n for n, _ in module.named_parameters())  # not a submodule
    td = _rollout(reward=1.0)
    expected = torch.zeros(4, 8)
    net = rl.model.net
    net.eval()
    abs_norm = sum((net.absorbing[i] - net.mean[i]) / net.std[i] for i in range(2)) / 2
    for n in range(4):
        for t in range(8):
            x = torch.cat([td["observation"][n, t], torch.nn.functional.one_hot(td["action"][n, t], 2).float()])
            r = sum((net.members[i](x)[0] - net.mean[i]) / net.std[i] for i in range(2)) / 2
            expected[n, t] = (r - abs_norm) / max(abs(abs_norm), 1.0)  # the absorbing state earns 0
    out = module.relabel_batch(td.clone())  # the replay source's per-minibatch hook: relabel only
    torch.testing.assert_close(out["next", "reward"].squeeze(-1), expected.detach())


def test_environment_reward_never_reaches_the_policy_loss(tmp_path):
    """Same rollout, env reward NaN/huge vs 0: everything the policy learns from is identical. Labels come from a
    person here (``annotator: none``, both stores labelled alike), so the env's reward has no way in at all."""
    from lrl.algos.ppo.module import PPO

    results = []
    for poison in (float("nan"), 1e30, 0.0):
        root = tmp_path / str(poison)
        rl = _learner(root, _cfg(annotator="none", labels=6), gamma=0.9)
        store = PreferenceStore(root / "preferences", "run", "CartPole-v1")
        seg = {"obs0": np.zeros((4, 4), np.float32), "act0": np.zeros(4, np.int64), "absorbed0": np.zeros(4, bool),
               "obs1": np.ones((4, 4), np.float32), "act1": np.ones(4, np.int64), "absorbed1": np.zeros(4, bool)}
        store.add_query("seed-pair", seg)
        store.add_label("seed-pair", "right", by="person")
        rl.open_store()
        torch.manual_seed(0)
        module = PPO(CARTPOLE, minibatch_size=None, epochs=1)
        module.attach_reward_learner(rl)
        rl.policy = module.collection_policy()
        td = _rollout(reward=poison)
        td = module.relabel_rollout(td)
        td = module.process_rollout(td)
        out = module._compute_loss(td["observation"], td["action"], torch.zeros(4, 8), td["advantage"],
                                   td["value_target"], td["value"], 0.2)
        out["loss"].backward()
        results.append((td["next", "reward"], td["advantage"], out["loss"].detach(),
                        [p.grad.clone() for p in module.parameters()]))
        assert rl.updates == 1 and rl.asked == 3  # the update ran: queries asked, the model trained
    for other in results[:2]:
        torch.testing.assert_close(other[0], results[2][0], rtol=0, atol=0)
        torch.testing.assert_close(other[1], results[2][1], rtol=0, atol=0)
        torch.testing.assert_close(other[2], results[2][2], rtol=0, atol=0)
        for a, b in zip(other[3], results[2][3], strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert torch.isfinite(results[0][0]).all()


def test_features_one_hot_and_continuous():
    x = features(CARTPOLE, torch.zeros(3, 4), torch.tensor([0, 1, 1]))
    assert x.shape == (3, 6) and x[:, 4:].tolist() == [[1, 0], [0, 1], [0, 1]]
    spec = Spec(id="P", obs_shape=(3,), action_kind="continuous", action_dim=2, action_low=(-1, -1),
                action_high=(1, 1))
    assert features(spec, torch.zeros(5, 7, 3), torch.ones(5, 7, 2)).shape == (5, 7, 5)
