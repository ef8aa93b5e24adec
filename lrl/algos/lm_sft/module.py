"""Supervised fine-tuning / pretraining of a causal language model (Rossi §15.1-15.2.7, step (1)-(2) of the RLHF
pipeline): next-token likelihood on a corpus, docs/lm-rlhf.md.

Each gradient step takes a minibatch of texts (``prompt + response + eos``, right-padded; source ``lm-text``) and
minimises the mean negative log-likelihood of every non-pad token after the first, over the WHOLE text (prompt and
response: pretraining-style; the prompt tokens of the synthetic tasks are uniform digits, so their part of the loss
is a constant the model cannot lower below log 10)::

    loss = −mean_{t: mask_t = 1, t ≥ 1} log π_θ(w_t | w_<t)

The model is any local ``transformers`` causal-LM directory named by the source (``data.model``), or, without one,
a tiny GPT-2 built from a config (``n_layer``, ``n_embd``, ``n_head``) with a tokenizer trained on the task's corpus.
The finished model is written as a Hugging Face directory (``save_pretrained``, tokenizer included) to
``RUN_DIR/model/`` at the end of training; Lightning checkpoints keep the exact resume.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import torch

from lrl.algos.base import RLModule
from lrl.contract import Consumes
from lrl.spec import Spec


def token_nll(logits: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean −log π(w_t | w_<t) over the tokens t ≥ 1 with ``attention_mask`` 1 ([B, T, V] logits, [B, T] ids)."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1).gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    mask = attention_mask[:, 1:].to(logp.dtype)
    return -(logp * mask).sum() / mask.sum().clamp_min(1)


class LMSFT(RLModule):
    shards_models = True  # trainer.strategy: fsdp (lrl.lm.sharding)
    consumes = Consumes(sources=("lm-text",), keys=("input_ids", "attention_mask"), observations=("tokens",),
                        actions=("token",))

    def __init__(self, spec: Spec, *, lr: float = 3e-3, lr_schedule: Literal["constant", "linear"] = "constant",
                 max_grad_norm: float | None = 1.0, adam_eps: float = 1e-8, n_layer: int = 2, n_embd: int = 64,
                 n_head: int = 2, n_positions: int = 32) -> None:
        """
        Args:
            lr, lr_schedule: Adam step size, constant or linear to 0 over the budget.
            max_grad_norm: global gradient-norm clip (None = off). adam_eps: Adam ε.
            n_layer, n_embd, n_head, n_positions: the tiny GPT-2 built when the source names no model directory
                (ignored otherwise).
        """
        super().__init__(spec)
        self.save_hyperparameters(ignore=["spec"])
        from lrl.lm.models import load_causal_lm, spec_model_dir, spec_tokenizer, tiny_lm

        path = spec_model_dir(spec)
        if path is not None:
            self.model, self.tokenizer = load_causal_lm(path, "data.model")
        else:
            self.tokenizer = spec_tokenizer(spec)
            self.model = tiny_lm(self.tokenizer, n_layer, n_embd, n_head, n_positions)

    def losses(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits
        nll = token_nll(logits, input_ids, attention_mask)
        return {"loss": nll, "loss/nll": nll}

    def training_step(self, dataloader_iter: Iterator[Any]) -> torch.Tensor:  # type: ignore[override]
        batch = self.next_batch(dataloader_iter)
        self.record(**{"stats/lr": self.scheduled_lr(batch.progress_remaining)})
        out = self.losses(batch.td["input_ids"], batch.td["attention_mask"])
        self.record(**{k: v for k, v in out.items() if k != "loss"})
        return out["loss"]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.adam(self.model.parameters(), self.hp.lr, self.hp.adam_eps)

    def configure_model(self) -> None:
        """Under ``trainer.strategy: fsdp``: the model sharded over the processes (:mod:`lrl.lm.sharding`)."""
        from lrl.lm.sharding import shard_models

        shard_models(self, self.model)

    def on_train_end(self) -> None:
        super().on_train_end()
        from lrl.lm.sharding import save_final

        save_final(self, self.model, self.tokenizer, Path(self.trainer.default_root_dir) / "model")
