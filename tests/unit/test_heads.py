"""Policy heads against torch.distributions: log-probs, entropy, KL, sampling frequencies."""

from __future__ import annotations

import torch

from lrl.networks.heads import CategoricalHead, GaussianHead


def test_categorical_matches_torch() -> None:
    head = CategoricalHead(3, 4)
    feats = torch.randn(5, 3)
    params = head(feats)
    dist = torch.distributions.Categorical(logits=head.linear(feats))
    actions = dist.sample()
    torch.testing.assert_close(head.log_prob(params, actions), dist.log_prob(actions))
    torch.testing.assert_close(head.entropy(params), dist.entropy())
    other = head(torch.randn(5, 3))
    expected = torch.distributions.kl_divergence(dist, torch.distributions.Categorical(logits=other[0]))
    torch.testing.assert_close(head.kl(params, other), expected)
    torch.testing.assert_close(head.kl(params, params), torch.zeros(5))


def test_gumbel_max_sampling_frequencies() -> None:
    logp = torch.log(torch.tensor([[0.1, 0.6, 0.3]])).expand(200_000, 3)
    g = torch.Generator().manual_seed(0)
    samples = CategoricalHead(1, 3).sample((logp,), g)
    freq = torch.bincount(samples, minlength=3).float() / samples.numel()
    torch.testing.assert_close(freq, torch.tensor([0.1, 0.6, 0.3]), atol=5e-3, rtol=0)


def test_gaussian_matches_torch() -> None:
    head = GaussianHead(3, 2, log_std_init=-0.5)
    params = head(torch.randn(6, 3))
    mean, log_std = params
    dist = torch.distributions.Independent(torch.distributions.Normal(mean, log_std.exp()), 1)
    a = dist.sample()
    torch.testing.assert_close(head.log_prob(params, a), dist.log_prob(a))
    torch.testing.assert_close(head.entropy(params), dist.entropy())
    other = (mean + 0.3, log_std + 0.2)
    dist2 = torch.distributions.Independent(torch.distributions.Normal(other[0], other[1].exp()), 1)
    torch.testing.assert_close(head.kl(params, other), torch.distributions.kl_divergence(dist, dist2))
    torch.testing.assert_close(head.kl(params, params), torch.zeros(6), atol=1e-6, rtol=0)
    torch.testing.assert_close(head.mode(params), mean)
