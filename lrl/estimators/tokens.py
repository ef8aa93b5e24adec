"""Token-level helpers for language-model policies (tokens are the actions, Rossi §15.2.1): log-probabilities of
sampled tokens at a temperature, the entropy of the tempered distribution, and the mask of a generated response.
Shared by the prompts source (:mod:`lrl.lm.generation`) and the RLHF losses."""

from __future__ import annotations

import torch


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log softmax(logits / T)[token]: the log-probability of each sampled token under the policy *at the sampling
    temperature* (Rossi §15.2.9: the policy's logits are temperature-scaled), in float32. ``logits`` ``[..., V]``,
    ``tokens`` ``[...]``."""
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)
    return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def mask_tokens(logits: torch.Tensor, never: list[int]) -> torch.Tensor:
    """``logits`` in float32 with the columns of the tokens a policy never samples (``never``: pad, unk) set to
    −1e9: their probability is 0 at any temperature, as ``generate(suppress_tokens=never)`` samples them, and no
    entropy term meets 0·(−inf)."""
    out = logits.float()
    if not never:
        return out
    return out.index_fill(-1, torch.tensor(never, device=logits.device), -1e9)


def token_entropy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """H[softmax(logits / T)] per position, in float32."""
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def response_mask(tokens: torch.Tensor, eos_id: int) -> torch.Tensor:
    """True for every generated token up to and including the first ``eos_id`` of its row (all of a row without
    one); the padding a batched generator writes after a row's end is False."""
    eos = tokens == eos_id
    after = (eos.long().cumsum(-1) - eos.long()) > 0  # strictly after the first end-of-sequence token
    return ~after


def last_index(mask: torch.Tensor) -> torch.Tensor:
    """Column of the last True of each row of ``mask`` ``[B, R]`` (the last generated token, m − 1)."""
    cols = torch.arange(mask.shape[-1], device=mask.device)
    return torch.where(mask.bool(), cols, torch.zeros_like(cols)).amax(-1)
