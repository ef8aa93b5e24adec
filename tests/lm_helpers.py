"""Tiny model directories for the rlhf-ppo tests (seconds on a CPU), built with lrl's own builders
(:mod:`lrl.lm.models`) for the ``reverse`` task (:mod:`lrl.lm.task`): the task's character tokenizer, a 1-layer
GPT-2 policy and a 1-layer GPT-2 reward model, each saved with ``save_pretrained`` and its tokenizer. Nothing is
downloaded. The models are untrained: the tests check the maths and the wiring, not learning."""

from __future__ import annotations

from pathlib import Path


def build_models(root: Path, seed: int = 0, dropout: float = 0.0) -> tuple[Path, Path]:
    """(policy dir, reward-model dir) under ``root``. ``dropout`` > 0 saves the policy with dropout in its config
    (for the test that rlhf-ppo turns it off)."""
    import torch

    from lrl.lm.models import build_tokenizer, save_model, tiny_lm, tiny_reward_model
    from lrl.lm.task import get_task

    policy_dir, reward_dir = root / "sft", root / "rm"
    tok = build_tokenizer(get_task("reverse"), root / "tokenizer")
    torch.manual_seed(seed)
    policy = tiny_lm(tok, n_layer=1, n_embd=16, n_head=2)
    if dropout:
        policy.config.update({"resid_pdrop": dropout, "embd_pdrop": dropout, "attn_pdrop": dropout})
    save_model(policy, tok, policy_dir)
    torch.manual_seed(seed + 1)
    rm = tiny_reward_model(tok, n_layer=1, n_embd=16, n_head=2)
    with torch.no_grad():  # a reward head with some spread, so rewards differ between responses
        rm.score.weight.normal_(0.0, 1.0)
    save_model(rm, tok, reward_dir)
    return policy_dir, reward_dir
