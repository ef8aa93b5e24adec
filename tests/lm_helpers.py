"""Tiny language-model stand-ins for the RLHF tests (seconds on a CPU): a word-level tokenizer trained with
``tokenizers``, GPT-2 models built from a config and saved with ``save_pretrained``, and a one-digit addition task
with a hidden true score. Nothing is downloaded. (The lead switches these to ``lrl.lm.task`` / ``lrl.lm.models``.)
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Literal

WORDS = [str(i) for i in range(19)] + ["+", "="]
SPECIAL = ["[PAD]", "[EOS]", "[UNK]"]


class TinyAdd:
    """``a + b =`` → ``c``: the hidden true score is 1 for the right sum, else 1 / (1 + |error|), 0 for no number."""

    name = "tiny-add"

    def corpus(self, n: int, seed: int) -> list[str]:
        rng = random.Random(seed)
        out = []
        for _ in range(n):
            a, b = rng.randrange(10), rng.randrange(10)
            out.append(f"{a} + {b} = {a + b}")
        return out

    def prompts(self, split: Literal["train", "test"], n: int, seed: int) -> list[str]:
        rng = random.Random(seed + (0 if split == "train" else 10_000))
        return [f"{rng.randrange(10)} + {rng.randrange(10)} =" for _ in range(n)]

    def score(self, prompt: str, response: str) -> float:
        a, _, b, _ = prompt.split()
        words = response.split()
        if not words or not words[0].isdigit():
            return 0.0
        return 1.0 / (1.0 + abs(int(words[0]) - (int(a) + int(b))))


def tiny_add() -> TinyAdd:
    return TinyAdd()


def build_tokenizer(out_dir: Path) -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIAL + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", eos_token="[EOS]", unk_token="[UNK]")
    fast.save_pretrained(out_dir)
    return fast


def _config(tok: Any, **kw: Any) -> Any:
    from transformers import GPT2Config

    return GPT2Config(vocab_size=len(tok), n_positions=24, n_embd=16, n_layer=1, n_head=2,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.eos_token_id,
                      **kw)


def build_models(root: Path, seed: int = 0, dropout: float = 0.0) -> tuple[Path, Path]:
    """(policy dir, reward-model dir) under ``root``: a GPT-2 causal LM and a GPT-2 sequence classifier
    (num_labels=1), each saved with its tokenizer."""
    import torch
    from transformers import GPT2ForSequenceClassification, GPT2LMHeadModel

    policy_dir, reward_dir = root / "sft", root / "rm"
    tok = build_tokenizer(policy_dir)
    tok.save_pretrained(reward_dir)
    drop = {"resid_pdrop": dropout, "embd_pdrop": dropout, "attn_pdrop": dropout}
    torch.manual_seed(seed)
    GPT2LMHeadModel(_config(tok, **drop)).save_pretrained(policy_dir)
    torch.manual_seed(seed + 1)
    rm = GPT2ForSequenceClassification(_config(tok, num_labels=1, **drop))
    with torch.no_grad():  # a reward head with some spread, so rewards differ between responses
        rm.score.weight.normal_(0.0, 1.0)
    rm.save_pretrained(reward_dir)
    return policy_dir, reward_dir
