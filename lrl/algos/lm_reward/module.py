"""Reward model r̂(x, y) from preferences (Rossi §15.2.2-15.2.3, eq. 15.4-15.6), docs/lm-rlhf.md.

r̂ is a ``transformers`` ``AutoModelForSequenceClassification`` with one output, read at the last non-pad token of
``prompt + response + eos`` (the end-of-sequence marker). It starts from the policy directory the preferences were
sampled from (``init: policy``: the SFT model's transformer body, a new score head) or from a fresh tiny GPT-2 body
(``init: tiny``, ``n_layer``/``n_embd``/``n_head``; a reward model smaller than the policy, as Ouyang's 6B RM for a
175B policy). ``frozen_body: true`` keeps the body as it was loaded (the input encoded by the unoptimised SFT model,
Ziegler §4.2) and trains the score head only.

Each gradient step takes ``data.batch_size`` prompts with their K responses (source ``lm-prefs``) and minimises one
of (:mod:`lrl.algos.lm_reward.loss`):
- ``pairwise`` (eq. 15.4): the first two responses of each prompt, b = which the annotator ranked higher;
- ``four_way`` (eq. 15.5): the first four responses, cross-entropy toward the one ranked highest (needs K >= 4);
- ``kwise`` (eq. 15.6): all C(K, 2) pairs of a prompt averaged as ONE batch element.

Metrics: ``rm/train_accuracy`` (the minibatch's pairs ordered as the annotator's noisy ranking orders them) and
``rm/accuracy`` (held-out prompts, ordered as the hidden TRUE score orders them; pairs of equal true score are not
counted), after every ``eval_every``-th update and the last (logged with the next metric flush). The finished model
goes to ``RUN_DIR/model/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import torch

from lrl.algos.base import RLModule
from lrl.algos.lm_reward.loss import four_way_loss, kwise_loss, pair_accuracy, pairwise_loss
from lrl.contract import Consumes
from lrl.errors import RecipeError
from lrl.spec import Spec

USED = {"pairwise": 2, "four_way": 4}  # responses per prompt each loss reads (kwise: all K)


class LMReward(RLModule):
    shards_models = True  # trainer.strategy: fsdp (lrl.lm.sharding)
    consumes = Consumes(sources=("lm-prefs",), keys=("input_ids", "attention_mask", "utility"),
                        observations=("tokens",), actions=("token",))

    def __init__(self, spec: Spec, *, loss: Literal["pairwise", "four_way", "kwise"] = "kwise",
                 init: Literal["policy", "tiny"] = "policy", frozen_body: bool = False, lr: float = 1e-3,
                 lr_schedule: Literal["constant", "linear"] = "constant", max_grad_norm: float | None = 1.0,
                 adam_eps: float = 1e-8, n_layer: int = 1, n_embd: int = 32, n_head: int = 2, n_positions: int = 32,
                 eval_every: int = 50) -> None:
        """
        Args:
            loss: ``pairwise`` (eq. 15.4), ``four_way`` (eq. 15.5) or ``kwise`` (eq. 15.6).
            init: ``policy``: the body of the policy directory the data was sampled from; ``tiny``: a fresh GPT-2
                body of ``n_layer`` × ``n_embd`` (``n_head`` heads, ``n_positions`` positions).
            frozen_body: train the score head only, on the frozen body's final hidden state.
            lr, lr_schedule, max_grad_norm, adam_eps: as lm-sft.
            eval_every: held-out accuracy every N gradient steps (and at the last).
        """
        super().__init__(spec)
        self.save_hyperparameters(ignore=["spec"])
        from lrl.lm.models import load_reward_model, spec_model_dir, spec_tokenizer, tiny_reward_model

        path = spec_model_dir(spec)
        if init == "policy" and path is not None:
            self.model, self.tokenizer = load_reward_model(path, "data.policy")
        else:
            self.tokenizer = spec_tokenizer(spec)
            self.model = tiny_reward_model(self.tokenizer, n_layer, n_embd, n_head, n_positions)
        if frozen_body:
            self.model.base_model.requires_grad_(False)
        self._heldout: Any = None  # the held-out set, when this step's update is to be followed by its accuracy

    def rewards(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """r̂ of [..., T] sequences, shape [...]."""
        shape = input_ids.shape[:-1]
        flat = self.model(input_ids=input_ids.reshape(-1, input_ids.shape[-1]),
                          attention_mask=attention_mask.reshape(-1, input_ids.shape[-1])).logits
        return flat.float().reshape(shape)

    def losses(self, td: Any) -> dict[str, torch.Tensor]:
        k = td["input_ids"].shape[1]
        use = USED.get(self.hp.loss, k)
        if use > k:
            raise RecipeError(f"algo.loss={self.hp.loss} reads {use} responses per prompt but data.k={k}; set "
                              f"data.k={use} or more")
        r = self.rewards(td["input_ids"][:, :use], td["attention_mask"][:, :use])
        u = td["utility"][:, :use]
        if self.hp.loss == "pairwise":
            loss = pairwise_loss(r[:, 0], r[:, 1], (u[:, 1] > u[:, 0]).float())
        elif self.hp.loss == "four_way":
            loss = four_way_loss(r, u.argmax(-1))
        else:
            loss = kwise_loss(r, u)
        right, counted = pair_accuracy(r.detach(), u)
        return {"loss": loss, "loss/rm": loss, "rm/train_accuracy": right / counted.clamp_min(1)}

    @torch.no_grad()
    def heldout_accuracy(self, td: Any) -> torch.Tensor:
        """Pairs of held-out prompts that r̂ orders as the hidden true score does (ties in the true score not
        counted), summed over all ranks."""
        was = self.model.training
        self.model.eval()
        r = self.rewards(td["input_ids"], td["attention_mask"])
        self.model.train(was)
        counts = torch.stack(pair_accuracy(r, td["score"])).float()
        if self.trainer.world_size > 1:
            counts = self.trainer.strategy.reduce(counts, reduce_op="sum")
        return counts[0] / counts[1].clamp_min(1)

    def training_step(self, dataloader_iter: Iterator[Any]) -> torch.Tensor:  # type: ignore[override]
        batch = self.next_batch(dataloader_iter)
        self.record(**{"stats/lr": self.scheduled_lr(batch.progress_remaining)})
        out = self.losses(batch.td)
        self.record(**{k: v for k, v in out.items() if k != "loss"})
        step = self.trainer.global_step + 1
        due = step % self.hp.eval_every == 0 or batch.progress_remaining <= 0
        self._heldout = batch.streams.get("heldout") if due else None
        return out["loss"]

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._heldout is not None:  # after this step's update, before the metrics are flushed
            self.record(**{"rm/accuracy": self.heldout_accuracy(self._heldout)})
            self._heldout = None
        super().on_train_batch_end(outputs, batch, batch_idx)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.adam([p for p in self.model.parameters() if p.requires_grad], self.hp.lr, self.hp.adam_eps)

    def configure_model(self) -> None:
        """Under ``trainer.strategy: fsdp``: the model sharded over the processes (:mod:`lrl.lm.sharding`)."""
        from lrl.lm.sharding import shard_models

        shard_models(self, self.model)

    def on_train_end(self) -> None:
        super().on_train_end()
        from lrl.lm.sharding import save_final

        save_final(self, self.model, self.tokenizer, Path(self.trainer.default_root_dir) / "model")
