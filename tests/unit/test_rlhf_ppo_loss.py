"""RLHF-PPO's estimators and losses against hand computations, slow loops and TorchRL's GRPOLoss (Rossi ch. 15)."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from lrl.algos.ppo.loss import ppo_loss
from lrl.algos.rlhf_ppo.loss import (
    adaptive_kl_coef,
    group_advantages,
    grpo_loss,
    kl_k3,
    last_index,
    per_token_rewards,
    ptx_logprob,
    response_mask,
    reward_to_go,
    rlhf_ppo_loss,
    token_gae,
    token_logprobs,
    whiten,
)

EOS = 9


def test_response_mask_stops_after_the_first_eos_and_last_index_is_the_last_generated_token() -> None:
    tokens = torch.tensor([[3, 4, EOS, 0, 0], [5, 6, 7, 8, 2], [EOS, EOS, EOS, EOS, EOS]])
    mask = response_mask(tokens, EOS)
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]
    assert last_index(mask).tolist() == [2, 4, 0]


def test_one_reward_model_term_at_the_last_generated_token_and_kl_at_every_token() -> None:
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    logratio = torch.tensor([[0.1, -0.2, 0.3, 9.0], [0.5, 0.0, -0.1, 0.2]])
    score = torch.tensor([2.0, -1.0])
    r = per_token_rewards(score, logratio, mask, beta=0.5)
    expected = torch.tensor([[-0.05, 0.1, -0.15 + 2.0, 0.0], [-0.25, 0.0, 0.05, -0.1 - 1.0]])
    torch.testing.assert_close(r, expected)
    # exactly one RM term per row: removing the KL part leaves r̂ at index m-1 and zeros elsewhere
    rm_part = r + 0.5 * logratio * mask
    assert (rm_part != 0).sum(-1).tolist() == [1, 1]
    # at initialisation π^RL = π^SFT: every log-ratio is 0 and the rewards are [0, ..., 0, r̂]
    r0 = per_token_rewards(score, torch.zeros_like(logratio), mask, beta=0.5)
    assert r0.tolist() == [[0.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, -1.0]]


def test_gamma_one_reward_to_go_is_score_minus_beta_times_the_remaining_log_ratios() -> None:
    torch.manual_seed(0)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    logratio = torch.randn(2, 6) * mask
    score, beta = torch.tensor([1.5, -0.5]), 0.2
    g = reward_to_go(per_token_rewards(score, logratio, mask, beta), mask)
    for b in range(2):
        m = int(mask[b].sum())
        for t in range(m):
            assert g[b, t].item() == pytest.approx(score[b].item() - beta * logratio[b, t:m].sum().item(), abs=1e-6)
        assert (g[b, m:] == 0).all()


def test_token_gae_matches_a_slow_loop_and_lambda_one_is_reward_to_go_minus_value() -> None:
    torch.manual_seed(1)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    rewards, values = torch.randn(2, 5) * mask, torch.randn(2, 5) * mask
    lam = 0.9
    adv, ret = token_gae(rewards, values, mask, lam)
    for b in range(2):
        m = int(mask[b].sum())
        running = 0.0
        for t in reversed(range(m)):
            nv = values[b, t + 1].item() if t + 1 < m else 0.0
            delta = rewards[b, t].item() + nv - values[b, t].item()
            running = delta + lam * running
            assert adv[b, t].item() == pytest.approx(running, abs=1e-5)
            assert ret[b, t].item() == pytest.approx(running + values[b, t].item(), abs=1e-5)
        assert (adv[b, m:] == 0).all()
    adv1, _ = token_gae(rewards, values, mask, 1.0)
    torch.testing.assert_close(adv1, (reward_to_go(rewards, mask) - values) * mask)


def test_log_ratio_uses_the_sampling_temperature() -> None:
    torch.manual_seed(2)
    logits, tokens, t = torch.randn(3, 4, 7), torch.randint(0, 7, (3, 4)), 0.7
    probs = torch.softmax(logits / t, -1)
    expected = probs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1).log()
    torch.testing.assert_close(token_logprobs(logits, tokens, t), expected)
    assert not torch.allclose(token_logprobs(logits, tokens, 1.0), expected)


def test_whitening_gives_mean_zero_std_one_over_the_masked_entries() -> None:
    x = torch.tensor([1.0, 2.0, 3.0, 100.0])
    mask = torch.tensor([1, 1, 1, 0], dtype=torch.bool)
    w = whiten(x, mask)
    real = w[mask]
    assert real.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert real.pow(2).mean().sqrt().item() == pytest.approx(1.0, abs=1e-5)  # population std
    assert w[3].item() == 0.0


def _whiten_rank(rank: int, port: int, shards: list[torch.Tensor], out: dict[int, list[float]]) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        out[rank] = whiten(shards[rank]).tolist()
    finally:
        dist.destroy_process_group()


def test_whitening_across_two_gloo_ranks_normalises_the_global_batch() -> None:
    shards = [torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10.0, 20.0, 30.0, 40.0])]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    manager = mp.Manager()
    out = manager.dict()
    mp.spawn(_whiten_rank, args=(port, shards, out), nprocs=2, join=True)
    together = torch.tensor(out[0] + out[1])
    assert together.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert together.pow(2).mean().sqrt().item() == pytest.approx(1.0, abs=1e-5)
    # each rank alone would not be centred: the statistics really are global
    assert torch.tensor(out[0]).mean().item() < -0.5
    torch.testing.assert_close(together, whiten(torch.cat(shards)))


def test_adaptive_kl_controller_moves_beta_toward_the_target_and_clips_the_error() -> None:
    # Ziegler: β(1 + clip(KL/target − 1, ±0.2) · n / horizon)
    assert adaptive_kl_coef(0.1, 6.0, 6.0, 64, 10_000) == pytest.approx(0.1)
    assert adaptive_kl_coef(0.1, 6.6, 6.0, 64, 10_000) == pytest.approx(0.1 * (1 + 0.1 * 64 / 10_000))
    assert adaptive_kl_coef(0.1, 60.0, 6.0, 64, 10_000) == pytest.approx(0.1 * (1 + 0.2 * 64 / 10_000))
    assert adaptive_kl_coef(0.1, 0.0, 6.0, 64, 10_000) == pytest.approx(0.1 * (1 - 0.2 * 64 / 10_000))


def test_rlhf_ppo_loss_is_lrl_ppo_loss_on_the_generated_tokens() -> None:
    torch.manual_seed(3)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    t = [torch.randn(2, 3) for _ in range(7)]
    kw = {"clip_range": 0.2, "clip_range_vf": 0.3, "vf_coef": 0.5, "ent_coef": 0.01}
    out = rlhf_ppo_loss(*t, mask, **kw)
    ref = ppo_loss(*[x[mask] for x in t], **kw)
    for k in ("loss", "policy", "value", "entropy"):
        torch.testing.assert_close(out[k], ref[k])


def test_ptx_gradient_is_the_ppo_gradient_plus_lambda_grad_mean_log_likelihood() -> None:
    torch.manual_seed(4)
    w = torch.randn(5, 6, requires_grad=True)  # a bigram "language model": logits = w[previous token]
    z = torch.tensor([[1, 2, 3, 0], [4, 4, 1, 2]])
    z_mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    mask = torch.ones(2, 3, dtype=torch.bool)
    tokens, prev = torch.randint(0, 6, (2, 3)), torch.randint(0, 5, (2, 3))
    old = torch.randn(2, 3)
    adv, zeros = torch.randn(2, 3), torch.zeros(2, 3)
    lam = 0.7

    def loss(with_ptx: bool) -> torch.Tensor:
        logp = token_logprobs(w[prev], tokens)
        ptx = ptx_logprob(w[z], z, z_mask) if with_ptx else None
        return rlhf_ppo_loss(logp, old, adv, zeros, zeros, zeros, zeros, mask, clip_range=0.2, clip_range_vf=None,
                             vf_coef=0.0, ent_coef=0.0, ptx_logp=ptx, ptx_coef=lam)["loss"]

    (g_total,) = torch.autograd.grad(loss(True), w)
    (g_ppo,) = torch.autograd.grad(loss(False), w)
    (g_ptx,) = torch.autograd.grad(_ptx_mean(w, z, z_mask), w)
    # the objective's gradient (−loss) is the PPO objective's gradient plus λ∇ mean log π(z)
    torch.testing.assert_close(-g_total, -g_ppo + lam * g_ptx)
    assert g_ptx.abs().sum() > 0
    # the pretraining term by hand: mean over the predicted non-padding tokens of log softmax(w[z_t])[z_{t+1}]
    hand = [torch.log_softmax(w[z[b, t]], -1)[z[b, t + 1]] for b in range(2) for t in range(3) if z_mask[b, t + 1]]
    torch.testing.assert_close(_ptx_mean(w, z, z_mask), torch.stack(hand).mean())


def _ptx_mean(w: torch.Tensor, z: torch.Tensor, z_mask: torch.Tensor) -> torch.Tensor:
    return ptx_logprob(w[z], z, z_mask)


def test_group_advantages_match_torchrl_mcadvantage_formula() -> None:
    score = torch.tensor([1.0, 0.0, 0.5, 0.5, 2.0, 3.0, 4.0, 5.0])
    group = torch.tensor([7, 7, 7, 7, 2, 2, 2, 2])
    adv = group_advantages(score, group)
    for g in (7, 2):
        r = score[group == g]
        torch.testing.assert_close(adv[group == g], (r - r.mean()) / r.std().clamp_min(1e-6))  # TorchRL's formula
    # a group whose responses all score alike carries no signal
    assert group_advantages(torch.ones(4), torch.zeros(4, dtype=torch.long)).abs().max().item() == 0.0


def test_grpo_loss_matches_torchrl_grpoloss_objective_and_kl_to_ref() -> None:
    from tensordict import TensorDict
    from torchrl.objectives.llm import GRPOLoss

    torch.manual_seed(5)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    logp, old, ref = torch.randn(2, 4) * 0.3 - 1, torch.randn(2, 4) * 0.3 - 1, torch.randn(2, 4) * 0.3 - 1
    adv = torch.randn(2, 1).expand(2, 4)
    beta = 0.05
    ours = grpo_loss(logp, old, ref, adv, torch.zeros(2, 4), mask, clip_range=0.2, beta=beta, ent_coef=0.0)
    lib = GRPOLoss(None, clip_epsilon=0.2, kl_to_ref_coeff=beta, entropy_bonus=False)
    per_token, _ = lib._compute_policy_objective((logp - old).unsqueeze(-1), adv.unsqueeze(-1))
    objective = per_token.squeeze(-1)[mask].mean()  # aggregation="token_mean"
    td = TensorDict({"_cur_log_prob": logp}, batch_size=[2])
    kl_loss, _ = lib._kl_to_ref(td, ref_log_prob=ref, mask=mask)
    # TorchRL averages its k3 over all positions with the masked ones set to 0 (0 contribution); ours over the
    # generated tokens: the same sum, divided by the token count instead of B·R
    torch.testing.assert_close(ours["policy"], objective)
    torch.testing.assert_close(kl_loss * mask.numel() / mask.sum(), beta * kl_k3(logp, ref)[mask].mean())
    torch.testing.assert_close(ours["loss"], objective + beta * kl_k3(logp, ref)[mask].mean())
