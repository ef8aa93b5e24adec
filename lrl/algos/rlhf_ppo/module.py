"""RLHF with PPO for language models (Rossi ch. 15; Ziegler et al. 2019, Stiennon et al. 2020, Ouyang et al. 2022),
or GRPO (Shao et al. 2024) with ``advantage: grpo``.

Models (all Hugging Face ``transformers`` directories written with ``save_pretrained``):
- π^RL: the causal LM the source names (``data.policy``: the ``lm-sft`` run's ``model/``), trained; dropout off
  (every model is kept in eval mode, Rossi §15.2.9); pad and unk are never sampled (probability 0);
- π^SFT: a frozen copy of the same directory, the reference of the KL penalty (no gradient, never updated);
- r̂: the frozen reward model at ``reward_path`` (``AutoModelForSequenceClassification``, ``num_labels=1``, the
  ``lm-reward`` run's ``model/``, on the policy's token ids): read as ``lm-reward`` reads it, at the end-of-sequence
  token of ``prompt + response + eos`` (a response cut at ``max_new_tokens`` gets the eos appended for the reading),
  so r̂ here equals ``lm-reward``'s score of the same text;
- V: a trainable copy of the reward model (Rossi §15.2.4: "initialised as a copy of the reward model"); per-token
  values V(s_t) = ``score(base_model(...))`` at the position of the token before a_t. Not built for GRPO.

Per collection step (:meth:`process_rollout`, no gradients): log-probs of the sampled tokens under π^RL and π^SFT
at the sampling temperature; the reward r̂(x, y) (whitened across all ranks to N(0, 1) with ``whiten_reward``);
per-token rewards r_k = −β log(π^RL/π^SFT)_k plus r̂ at the last generated token; GAE(γ = 1, λ) advantages and
value targets (λ = 1: the reward-to-go G_t = r̂ − β Σ_{k≥t} log-ratio_k minus V). β is constant (``kl_target:
null``) or adapted toward a KL target (Ziegler's controller). With GRPO: Â = the group-normalised r̂ of the K
responses to a prompt at every token, and the KL to the reference is a loss term β·k3 instead of a reward term.

Update: ``epochs`` × minibatches of ``minibatch_size`` sequences, lrl's PPO loss (:func:`lrl.algos.ppo.loss.ppo_loss`)
as a mean over generated tokens, minus λ·mean log π(z) on a pretraining minibatch (PPO-ptx, ``ptx_coef``; the
source's ``ptx`` stream). Metrics: ``rlhf/reward`` (raw r̂), ``rlhf/kl`` (per-sequence summed log-ratio),
``rlhf/true_score`` (the task's hidden score of the sampled responses), ``rlhf/ptx_loss``, ``rlhf/beta``,
``loss/*``, ``stats/*``; evaluation (``eval.every``): ``eval/true_score``, ``eval/reward``, ``eval/kl`` and sample
generations as a text artifact.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import torch
import torch.distributed as dist
from tensordict import TensorDict
from torch import nn

from lrl.algos.base import RLModule
from lrl.algos.rlhf_ppo.loss import (
    adaptive_kl_coef,
    group_advantages,
    grpo_loss,
    last_index,
    per_token_rewards,
    ptx_logprob,
    rlhf_ppo_loss,
    token_entropy,
    token_gae,
    token_logprobs,
    whiten,
)
from lrl.contract import Consumes
from lrl.errors import RecipeError
from lrl.estimators.tokens import mask_tokens
from lrl.spec import Spec

log = logging.getLogger("lrl")


def _no_dropout(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    return model


def token_scores(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 positions: torch.Tensor) -> torch.Tensor:
    """``score(base_model(...))`` at every position ``[B, L]``: per-token values, or the reward at a chosen token."""
    hidden = model.base_model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions)
    return model.score(hidden.last_hidden_state).squeeze(-1).float()


class RLHFPPO(RLModule):
    shards_models = True  # trainer.strategy: fsdp (lrl.lm.sharding)
    consumes = Consumes(sources=("prompts",), keys=("input_ids", "attention_mask", "response_mask", "group"),
                        observations=("tokens",), actions=("token",))

    def __init__(
        self, spec: Spec, *,
        reward_path: str, advantage: Literal["gae", "grpo"] = "gae",
        epochs: int = 4, minibatch_size: int | None = 16,
        lr: float = 1e-5, lr_schedule: Literal["constant", "linear"] = "constant", adam_eps: float = 1e-5,
        temperature: float = 1.0, kl_coef: float = 0.1, kl_target: float | None = None, kl_horizon: int = 10_000,
        gae_lambda: float = 0.95, clip_range: float = 0.2, clip_range_vf: float | None = 0.2,
        vf_coef: float = 0.1, ent_coef: float = 0.0, whiten_reward: bool = True, normalize_advantage: bool = True,
        ptx_coef: float = 0.0, max_grad_norm: float | None = 1.0,
    ) -> None:
        """
        Args:
            reward_path: the reward-model directory (the ``lm-reward`` run's ``model/``): the frozen r̂, and the value
                model's starting point; its tokenizer must be the policy's (``data.policy``: π^RL starts from it,
                the frozen reference is a copy of it).
            advantage: ``gae`` (PPO with a value head) or ``grpo`` (group-relative, no value head; needs
                ``data.samples_per_prompt`` ≥ 2).
            epochs, minibatch_size: the update schedule, minibatches of ``minibatch_size`` sequences (global).
            lr, lr_schedule, adam_eps: Adam for the policy and the value model together.
            temperature: the sampling temperature; log-probs and log-ratios are taken at it.
            kl_coef: β of the KL penalty (its start value when adaptive).
            kl_target, kl_horizon: Ziegler's adaptive β toward ``kl_target`` (summed per-sequence KL), horizon in
                sequences; ``kl_target: null`` keeps β constant.
            gae_lambda: λ of GAE over tokens (γ = 1; λ = 1 is the reward-to-go).
            clip_range, clip_range_vf: PPO's ε, and the value clip (None: off).
            vf_coef, ent_coef: weights of the value loss and of the entropy bonus.
            whiten_reward: whiten r̂ to mean 0 / std 1 over the collection step on all ranks.
            normalize_advantage: standardise advantages per minibatch over its tokens (PPO only).
            ptx_coef: λ of PPO-ptx (needs ``data.ptx_batch_size`` > 0).
            max_grad_norm: global gradient-norm clip (None: off).
        """
        super().__init__(spec)
        self.save_hyperparameters(ignore=["spec"])
        from lrl.lm.models import load_causal_lm, load_reward_model, never_sampled, spec_model_dir

        policy_path = spec_model_dir(spec)
        if policy_path is None:
            raise RecipeError("rlhf-ppo starts from a policy directory: set data.policy (the lm-sft run's model/)")
        missing = (f"train the reward model first: lrl train lm-reward/<task> --run-dir {Path(reward_path).parent} "
                   f"(with data.policy={policy_path})")
        policy, self.tokenizer = load_causal_lm(policy_path, "data.policy")
        self.never = never_sampled(self.tokenizer)
        self.policy: Any = _no_dropout(policy)
        self.reference: Any = _no_dropout(load_causal_lm(policy_path, "data.policy")[0]).requires_grad_(False)
        reward, reward_tok = load_reward_model(reward_path, "algo.reward_path", missing)
        if reward_tok.get_vocab() != self.tokenizer.get_vocab():
            raise RecipeError(f"algo.reward_path={reward_path}: its tokenizer is not the policy's (data.policy="
                              f"{policy_path}); the reward model must read the policy's token ids: train it with "
                              "lm-reward on that policy (data.policy)")
        self.reward_model: Any = _no_dropout(reward).requires_grad_(False)
        self.value_model: Any = (_no_dropout(load_reward_model(reward_path, "algo.reward_path")[0])
                                 if advantage == "gae" else None)
        self.beta: torch.Tensor
        self.register_buffer("beta", torch.tensor(float(kl_coef), dtype=torch.float64))
        # the language models stay in eval mode on purpose (no dropout): Lightning's notice about it is noise
        warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training.*")

    def train(self, mode: bool = True) -> RLHFPPO:
        """Every language model stays in eval mode: no dropout in the policy (Rossi §15.2.9), none anywhere."""
        super().train(mode)
        for m in (self.policy, self.reference, self.reward_model, self.value_model):
            if m is not None:
                m.eval()
        return self

    def configure_model(self) -> None:
        """Under ``trainer.strategy: fsdp``: every model sharded over the processes, the frozen reference and reward
        model too (:mod:`lrl.lm.sharding`)."""
        from lrl.lm.sharding import shard_models

        shard_models(self, self.policy, self.value_model, self.reference, self.reward_model)

    # --- acting ----------------------------------------------------------------------------------------------------
    def collection_policy(self) -> nn.Module:
        from lrl.lm.generation import TokenSampler

        tok = self.tokenizer
        return TokenSampler(self.policy, self.hp.temperature, tok.eos_token_id, tok.pad_token_id, self.never)

    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        raise TypeError("rlhf-ppo acts by sampling responses to prompts (its collection policy), not on observations")

    # --- per-token quantities ----------------------------------------------------------------------------------------
    @staticmethod
    def _split(td: TensorDict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
        ids, am, mask = td["input_ids"], td["attention_mask"], td["response_mask"]
        from lrl.lm.generation import position_ids

        return ids, am.long(), mask, position_ids(am), ids.shape[1] - mask.shape[1]

    def _logits(self, model: Any, td: TensorDict) -> torch.Tensor:
        """Logits that predict the response tokens ``[B, R, V]`` (the positions before each of them), float32, the
        tokens never sampled (pad, unk) at probability 0 as in generation."""
        ids, am, _, pos, p = self._split(td)
        return mask_tokens(model(input_ids=ids, attention_mask=am, position_ids=pos).logits[:, p - 1:-1], self.never)

    def _values(self, td: TensorDict) -> torch.Tensor:
        ids, am, _, pos, p = self._split(td)
        return token_scores(self.value_model, ids, am, pos)[:, p - 1:-1]

    def _reward(self, ids: torch.Tensor, am: torch.Tensor, mask: torch.Tensor, p: int) -> torch.Tensor:
        """r̂ at the end-of-sequence token of ``prompt + response + eos``, as ``lm-reward`` trains and reads it: a
        response cut at ``max_new_tokens`` (no eos) gets one appended in an extra column for this reading. Left
        padding is skipped by the attention mask and the position ids, so a padded row reads as the unpadded text."""
        from lrl.lm.generation import position_ids

        rows = torch.arange(ids.shape[0], device=ids.device)
        last = p + last_index(mask)
        ended = ids[rows, last] == self.tokenizer.eos_token_id
        extra = torch.full_like(ids[:, :1], self.tokenizer.pad_token_id)
        ids, am = torch.cat([ids, extra], 1), torch.cat([am, torch.zeros_like(am[:, :1])], 1)
        at = last + (~ended).long()
        ids[rows, at] = self.tokenizer.eos_token_id
        am[rows, at] = 1
        return token_scores(self.reward_model, ids, am, position_ids(am))[rows, at]

    @torch.no_grad()
    def score_rollout(self, td: TensorDict) -> dict[str, torch.Tensor]:
        """Per sequence: the reward model's r̂ on the last generated token, and the summed log-ratio to the reference;
        per token: π^RL's and π^SFT's log-probs at the sampling temperature. No collective calls (evaluation)."""
        ids, am, mask, _, p = self._split(td)
        tokens, t = ids[:, p:], self.hp.temperature
        logp = token_logprobs(self._logits(self.policy, td), tokens, t) * mask
        ref_logp = token_logprobs(self._logits(self.reference, td), tokens, t) * mask
        reward = self._reward(ids, am, mask, p)
        return {"reward": reward, "kl": (logp - ref_logp).sum(-1), "logp": logp, "ref_logp": ref_logp}

    @staticmethod
    def _global_mean(x: torch.Tensor) -> float:
        stats = torch.stack([x.float().sum(), torch.tensor(float(x.numel()), device=x.device)])
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(stats)
        return (stats[0] / stats[1]).item()

    @torch.no_grad()
    def process_rollout(self, td: TensorDict) -> TensorDict:
        hp = self.hp
        mask = td["response_mask"]
        m = mask.float()
        s = self.score_rollout(td)
        logratio = (s["logp"] - s["ref_logp"]) * m
        beta = float(self.beta.item())
        if hp.advantage == "grpo":
            adv = group_advantages(s["reward"], td["group"])[:, None] * m
            value, ret = torch.zeros_like(m), torch.zeros_like(m)
        else:
            score = whiten(s["reward"]) if hp.whiten_reward else s["reward"]
            rewards = per_token_rewards(score, logratio, mask, beta)
            value = self._values(td) * m
            adv, ret = token_gae(rewards, value, mask, hp.gae_lambda)
        td.set("old_logp", s["logp"])
        td.set("ref_logp", s["ref_logp"])
        td.set("advantage", adv)
        td.set("value_target", ret)
        td.set("value", value)
        kl = self._global_mean(s["kl"])
        n_seq = mask.shape[0] * self._world()  # sequences in this collection step, global
        self.record(**{"rlhf/reward": self._global_mean(s["reward"]), "rlhf/kl": kl, "rlhf/beta": beta,
                       "rlhf/true_score": self._global_mean(td["true_score"]),
                       "stats/response_length": self._global_mean(m.sum(-1)),
                       "stats/sample_logp_gap": (td["sample_log_prob"] - s["logp"]).abs().max().item()})
        if hp.kl_target is not None:
            self.beta.fill_(adaptive_kl_coef(beta, kl, hp.kl_target, n_seq, hp.kl_horizon))
        return td

    def _world(self) -> int:
        return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1

    # --- update ------------------------------------------------------------------------------------------------------
    def on_train_start(self) -> None:
        super().on_train_start()
        from lrl.contract import data_source

        streams = getattr(data_source(self.trainer), "streams", {})
        if self.hp.ptx_coef > 0 and "ptx" not in streams:
            raise RecipeError(f"algo.ptx_coef={self.hp.ptx_coef}: PPO-ptx needs pretraining batches; set "
                              "data.ptx_batch_size > 0")

    def on_train_end(self) -> None:
        """π^RL as a ``transformers`` directory ``RUN_DIR/model`` (``save_pretrained``, with the tokenizer), as the
        earlier stages write theirs: the next stage or any HF code loads it. Rank 0 writes; rewritten at every end."""
        super().on_train_end()
        from lrl.lm.sharding import save_final

        out = Path(self.trainer.default_root_dir) / "model"
        try:
            save_final(self, self.policy, self.tokenizer, out)  # every rank: a gather under FSDP
        except OSError as err:
            log.warning("could not write the final model to %s (%s); the checkpoint holds it", out, err)

    def training_step(self, dataloader_iter: Iterator[Any]) -> torch.Tensor:  # type: ignore[override]
        batch = self.next_batch(dataloader_iter)
        hp = self.hp
        if batch.first:
            self.record(**{"stats/lr": self.scheduled_lr(batch.progress_remaining)})
        td = batch.td
        _, _, mask, _, p = self._split(td)
        logits = self._logits(self.policy, td)
        tokens = td["input_ids"][:, p:]
        logp = token_logprobs(logits, tokens, hp.temperature)
        entropy = token_entropy(logits, hp.temperature)
        ptx_logp = None
        if "ptx" in batch.streams:  # with ptx_coef = 0 only measured: plain PPO's pretraining likelihood
            z = batch.streams["ptx"]
            with torch.set_grad_enabled(hp.ptx_coef > 0):
                ptx_logits = self.policy(input_ids=z["input_ids"], attention_mask=z["attention_mask"]).logits
                ptx_logp = ptx_logprob(ptx_logits, z["input_ids"], z["attention_mask"])
        if hp.advantage == "grpo":
            out = grpo_loss(logp, td["old_logp"], td["ref_logp"], td["advantage"], entropy, mask,
                            clip_range=hp.clip_range, beta=self.beta.float(), ent_coef=hp.ent_coef,
                            ptx_logp=ptx_logp, ptx_coef=hp.ptx_coef)
        else:
            adv = td["advantage"]
            if hp.normalize_advantage:
                adv = whiten(adv, mask, all_reduce=lambda t: t)  # this minibatch's tokens, as PPO's per-minibatch
            out = rlhf_ppo_loss(logp, td["old_logp"], adv, entropy, self._values(td), td["value_target"],
                                td["value"], mask, clip_range=hp.clip_range, clip_range_vf=hp.clip_range_vf,
                                vf_coef=hp.vf_coef, ent_coef=hp.ent_coef, ptx_logp=ptx_logp, ptx_coef=hp.ptx_coef)
            self.record(**{"loss/value": out["value"]})
        self.record(**{"loss/total": out["loss"], "loss/policy": out["policy"], "stats/entropy": out["entropy"],
                       "stats/approx_kl": out["approx_kl"], "stats/clip_fraction": out["clip_fraction"]})
        if "ptx" in out:
            self.record(**{"rlhf/ptx_loss": out["ptx"]})
        return out["loss"]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = [p for p in self.parameters() if p.requires_grad]
        return self.adam(params, self.hp.lr, self.hp.adam_eps)

