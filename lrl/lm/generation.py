"""Prompts as the run's data source: each collection step samples responses from the learner's language model,
tokens are the actions (Rossi §15.2.1), and the clock counts prompts (docs/contract.md §3).

Collection: ``prompts_per_batch`` prompts (global across ranks; each rank takes a contiguous share) are drawn from a
shuffled pass over the task's training prompts, each repeated ``samples_per_prompt`` times (GRPO's group), tokenised
with left padding, and handed to the module's ``collection_policy()`` (:class:`TokenSampler`): batched sampling with
a KV cache at the policy's temperature through ``transformers``' ``generate``. The sampled responses, their masks (up
to and including the first end-of-sequence token), the sampling log-probs, the prompt (group) ids and the task's
hidden true score form one TensorDict, which the module annotates (``process_rollout``: log-probs, KL, rewards,
advantages) and the stream yields as ``epochs`` passes of shuffled minibatches of ``minibatch_size`` sequences.

Why ``generate`` and not TorchRL's LLM wrappers: ``torchrl.modules.llm.TransformersWrapper`` calls the same
``generate`` and adds TorchRL's text/history/ragged-token structures (chat templates, ``History``, nested
``tokens``/``log_probs`` keys) for its LLM environments and collectors (``torchrl.collectors.llm``), which are built
around an environment loop and asynchronous weight updates; lrl's source needs one synchronous, seedable batched
sample per collection step with fixed-shape tensors, and computes the log-probs it trains on in its own forward pass.

Exact resume: the prompt stream's position (the permutation generator at the start of the pass, the position in it,
passes, collection steps), the sampling generator (each collection step seeds ``generate`` from it inside a forked
RNG, so nothing else draws from it) and the global RNG states are in every checkpoint.

The PPO-ptx stream (Rossi §15.2.8): with ``ptx_batch_size > 0`` a named stream ``ptx`` of pretraining texts from the
task's corpus (``task.corpus``), tokenised with right padding; every batch carries one minibatch of it
(``Batch.streams["ptx"]``) with its own position in every checkpoint (docs/contract.md §5).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import torch
from tensordict import TensorDict
from torch import nn

from lrl.callbacks.evaluation import PeriodicEvaluation
from lrl.contract import Batch, ClockUnit, Consumes, Schedule, learner
from lrl.data.dataset import OfflineStream
from lrl.data.ranked import BatchStream, RankedDataModule
from lrl.data.rng import rng_state, set_rng_state, trainer_device
from lrl.errors import RecipeError
from lrl.estimators.tokens import mask_tokens, response_mask, token_logprobs
from lrl.lm.task import get_task
from lrl.recipe.schema import EnvConfig, EvalConfig
from lrl.spec import Spec

log = logging.getLogger("lrl")


# --- the policy directory -----------------------------------------------------------------------------------------
def sft_missing(policy: str, task: str) -> str:
    """The advice when the SFT model directory does not exist: the command that writes it."""
    p = Path(policy)
    run_dir = str(p.parent) if p.name == "model" else "DIR"
    return (f"train the SFT stage first: lrl train lm-sft/{task} --run-dir {run_dir}"
            + ("" if p.name == "model" else " (then data.policy=DIR/model)"))


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding, as ``generate`` uses them: a left-padded row reads as an unpadded one."""
    return (attention_mask.long().cumsum(-1) - 1).clamp_min(0)


# --- sampling ------------------------------------------------------------------------------------------------------
class TokenSampler(nn.Module):
    """The collection policy of a language model: ``(prompt_ids, prompt_mask, seed) -> {"tokens", "mask",
    "sample_log_prob"}``. Batched sampling with a KV cache (``generate``) from the full softmax at ``temperature``
    (no top-k / top-p) over every token but ``never`` (pad, unk: lrl.lm.models.never_sampled), seeded inside a
    forked RNG; the log-probs are log softmax(logits / T) at the sampled tokens, ``never`` at probability 0."""

    def __init__(self, model: nn.Module, temperature: float, eos_id: int, pad_id: int,
                 never: list[int] | None = None) -> None:
        super().__init__()
        self.model, self.temperature, self.eos_id, self.pad_id = model, temperature, eos_id, pad_id
        self.never = list(never or [])

    @torch.no_grad()
    def forward(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, seed: int,  # type: ignore[override]
                max_new_tokens: int) -> dict[str, torch.Tensor]:
        from transformers import GenerationConfig

        cfg = GenerationConfig(do_sample=True, temperature=self.temperature, top_k=0, top_p=1.0,
                               max_new_tokens=max_new_tokens, min_new_tokens=1, pad_token_id=self.pad_id,
                               eos_token_id=self.eos_id, suppress_tokens=self.never or None, output_logits=True,
                               return_dict_in_generate=True)
        devices = [prompt_ids.device] if prompt_ids.device.type == "cuda" else []
        was_training = self.model.training
        self.model.eval()
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            out = self.model.generate(input_ids=prompt_ids, attention_mask=prompt_mask,  # type: ignore[operator]
                                      generation_config=cfg, synced_gpus=_synced(self.model))
        self.model.train(was_training)
        tokens = out.sequences[:, prompt_ids.shape[1]:]
        logits = mask_tokens(torch.stack(out.logits, 1), self.never)  # output_logits are the raw logits
        mask = response_mask(tokens, self.eos_id)
        logp = token_logprobs(logits, tokens, self.temperature) * mask
        return {"tokens": tokens, "mask": mask, "sample_log_prob": logp}


def _synced(model: nn.Module) -> bool:
    """A sharded model (FSDP) gathers its layers collectively at every forward: every rank keeps generating until
    the longest response on any rank has ended."""
    import torch.distributed as dist
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule) and dist.is_initialized() and dist.get_world_size() > 1


# --- the data source -----------------------------------------------------------------------------------------------
class PromptsDataModule(RankedDataModule):
    """Prompts → sampled responses (see the module docstring); the clock counts prompts, global across ranks."""

    clock_units: ClassVar[tuple[ClockUnit, ...]] = ("prompts",)
    needs_env: ClassVar[bool] = False
    provides: ClassVar[tuple[str, ...]] = ("input_ids", "attention_mask", "response_mask", "sample_log_prob",
                                          "group", "true_score")

    def __init__(self, *, env: EnvConfig | None, spec: Spec, seed: int, budget: int, clock_unit: ClockUnit,
                 schedule: Schedule, policy: str, task: str = "reverse", prompts_per_batch: int = 16,
                 samples_per_prompt: int = 1, max_new_tokens: int = 16, train_prompts: int = 1024,
                 eval_prompts: int = 64, eval_samples_shown: int = 16, ptx_batch_size: int = 0,
                 ptx_corpus: int = 1024, streams: dict[str, Any] | None = None) -> None:
        """
        Args:
            policy: the SFT model directory (the ``lm-sft`` run's ``model/``): its tokenizer encodes the prompts and
                ``rlhf-ppo`` starts π^RL and the frozen reference from it (the spec's ``id``).
            task: the synthetic task (``lrl.lm.task``): prompts, corpus and hidden score.
            prompts_per_batch: prompts per collection step, global across ranks.
            samples_per_prompt: responses sampled per prompt (K; GRPO's group, ≥ 2 for ``algo.advantage=grpo``).
            max_new_tokens: the longest response.
            train_prompts: size of the pool of training prompts (shuffled passes over it).
            eval_prompts: held-out prompts sampled at each evaluation (``eval.every``).
            eval_samples_shown: prompt/response pairs written to the evaluation's text artifact.
            ptx_batch_size: pretraining texts per update for PPO-ptx (global; 0: no ``ptx`` stream).
            ptx_corpus: size of the pretraining corpus drawn from the task.
            streams: further named offline streams, ``{name: {path, batch_size}}``.
        """
        super().__init__(seed=seed, budget=budget, clock_unit=clock_unit, streams=streams)
        self.spec, self.task_name, self.policy = spec, task, policy
        self.prompts_per_batch, self.samples_per_prompt = prompts_per_batch, samples_per_prompt
        self.max_new_tokens, self.train_prompts = max_new_tokens, train_prompts
        self.eval_prompts, self.eval_samples_shown = eval_prompts, eval_samples_shown
        self.minibatch_size, self.epochs = schedule.minibatch_size, schedule.epochs
        self.task: Any = None
        self.tokenizer: Any = None
        self.pool: list[str] = []
        self._perm_gen = torch.Generator().manual_seed(seed + 15_485_863)  # the prompt order
        self._pass_start = self._perm_gen.get_state()
        self._order: torch.Tensor | None = None
        self.pos, self.passes, self.rollouts = 0, 0, 0
        self._sample_gen = torch.Generator().manual_seed(seed + 32_452_843)  # per-rank: reseeded in setup
        self._mb_gen = torch.Generator().manual_seed(seed + 104_729)  # minibatch shuffles
        self._queue: list[torch.Tensor] = []
        self._flat: TensorDict | None = None
        if ptx_batch_size > 0:
            if "ptx" in self.streams:
                raise RecipeError("data.streams.ptx: the name is taken by the PPO-ptx stream (data.ptx_batch_size)")
            self.streams["ptx"] = OfflineStream(name="ptx", seed=seed + 7, batch_size=ptx_batch_size,
                                                loader=lambda: self._ptx_data(ptx_corpus))

    # --- declarations --------------------------------------------------------------------------------------------
    @classmethod
    def probe_spec(cls, env: EnvConfig | None, args: dict[str, Any]) -> Spec:
        """The policy's spec (``id``: its directory): token-id observations and token actions over its tokenizer's
        vocabulary. A missing directory is one line naming the command that trains it; a directory that is not a
        causal LM with a fitting tokenizer is one line too."""
        from lrl.lm.models import load_causal_lm

        task = args.get("task", "reverse")
        get_task(task)
        policy = str(args["policy"])
        tok = load_causal_lm(policy, "data.policy", sft_missing(policy, task))[1]
        n = len(tok)
        return Spec(id=policy, obs_shape=(1,), action_kind="token", action_dim=n, obs_kind="tokens", vocab_size=n)

    @classmethod
    def check_args(cls, args: dict[str, Any], env: EnvConfig | None, schedule: Schedule, consumes: Consumes,
                   world: int | None, budget: int | None = None) -> None:
        w, ppb, k, mb = world or 1, args["prompts_per_batch"], args["samples_per_prompt"], schedule.minibatch_size
        if ppb % w:
            raise RecipeError(f"data.prompts_per_batch={ppb} must be divisible by the number of processes ({w})")
        if ppb > args["train_prompts"]:
            raise RecipeError(f"data.prompts_per_batch={ppb} must be at most data.train_prompts="
                              f"{args['train_prompts']}")
        if mb is not None and (mb % w or (ppb * k) % mb):
            raise RecipeError(f"algo.minibatch_size={mb} must divide the sequences per collection step "
                              f"(data.prompts_per_batch × data.samples_per_prompt = {ppb * k}) and be divisible by "
                              f"the number of processes ({w})")

    # --- set-up ----------------------------------------------------------------------------------------------------
    def _ensure_task(self) -> None:
        from lrl.lm.models import load_tokenizer

        if self.task is None:
            self.task = get_task(self.task_name)
            self.tokenizer = load_tokenizer(self.policy, "data.policy")
            self.pool = list(self.task.prompts("train", self.train_prompts, self.seed))

    def _ptx_data(self, n: int) -> dict[str, torch.Tensor]:
        self._ensure_task()
        tok = self.tokenizer
        tok.padding_side = "right"
        texts = [t + (tok.eos_token or "") for t in self.task.corpus(n, self.seed + 1)]
        enc = tok(texts, return_tensors="pt", padding=True)
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def _built(self) -> bool:
        return self.task is not None

    def train_dataloader(self) -> BatchStream:
        trainer = self.trainer
        assert trainer is not None
        self.world_size, self.rank = trainer.world_size, trainer.global_rank
        self.check_args({"prompts_per_batch": self.prompts_per_batch, "samples_per_prompt": self.samples_per_prompt,
                         "train_prompts": self.train_prompts}, None, Schedule(self.epochs, self.minibatch_size),
                        Consumes(sources=()), self.world_size)
        if self.task is None:
            self._sample_gen.manual_seed(self.seed + 32_452_843 + 1_000 * self.rank)
        self._ensure_task()
        self._setup_streams(trainer.lightning_module.device)
        self._restore_pending()
        return BatchStream(self)

    def evaluation(self, cfg: EvalConfig, seed: int, budget_reached: Callable[[], bool]) -> L.Callback:
        """The evaluation callback of a run on this source (the launcher asks for it when there is no env)."""
        return PromptEvaluation(cfg, seed, budget_reached)

    # --- the clock -------------------------------------------------------------------------------------------------
    @property
    def clock(self) -> int:
        return self.rollouts * self.prompts_per_batch

    @property
    def at_boundary(self) -> bool:
        return not self._queue

    def end_rollout(self) -> None:
        self._queue.clear()

    # --- prompts ---------------------------------------------------------------------------------------------------
    def _next_prompts(self) -> list[tuple[int, str]]:
        """This rank's share of the next global batch of prompts, as (index in the pool, prompt)."""
        n = self.prompts_per_batch
        if self._order is None or self.pos + n > len(self._order):
            self._pass_start = self._perm_gen.get_state()
            self._order = torch.randperm(len(self.pool), generator=self._perm_gen)
            self.pos, self.passes = 0, self.passes + 1
        mine = n // self.world_size
        idx = self._order[self.pos + self.rank * mine: self.pos + (self.rank + 1) * mine].tolist()
        self.pos += n
        return [(i, self.pool[i]) for i in idx]

    def sample(self, prompts: list[str], groups: list[int], seed: int, device: torch.device) -> TensorDict:
        """Sample one response per prompt with the learner's collection policy; the rollout TensorDict."""
        tok = self.tokenizer
        tok.padding_side = "left"
        enc = tok(prompts, return_tensors="pt", padding=True).to(device)
        policy = learner(self.trainer).collection_policy()
        out = policy(enc["input_ids"], enc["attention_mask"], seed, self.max_new_tokens)
        tokens, mask = out["tokens"], out["mask"]
        responses = tok.batch_decode(torch.where(mask, tokens, tok.pad_token_id), skip_special_tokens=True)
        true = [float(self.task.score(p, r)) for p, r in zip(prompts, responses, strict=True)]
        return TensorDict({
            "input_ids": torch.cat([enc["input_ids"], tokens], 1),
            "attention_mask": torch.cat([enc["attention_mask"].bool(), mask], 1),
            "response_mask": mask,
            "sample_log_prob": out["sample_log_prob"],
            "group": torch.tensor(groups, device=device),
            "true_score": torch.tensor(true, device=device),
        }, batch_size=[len(prompts)])

    def _collect(self) -> None:
        module = learner(self.trainer)
        module.set_clock(self.clock)
        k = self.samples_per_prompt
        drawn = self._next_prompts()
        prompts = [p for _, p in drawn for _ in range(k)]
        groups = [i for i, _ in drawn for _ in range(k)]
        seed = int(torch.randint(0, 2**62, (1,), generator=self._sample_gen).item())
        td = self.sample(prompts, groups, seed, trainer_device(self))
        self.rollouts += 1
        self._flat = module.process_rollout(td)
        n = self._flat.shape[0]
        if self.minibatch_size is None:
            self._queue = [torch.arange(n) for _ in range(self.epochs)]
        else:
            mb = self.minibatch_size // self.world_size
            self._queue = [idx for _ in range(self.epochs)
                           for idx in torch.randperm(n, generator=self._mb_gen).split(mb)]

    def next_batch(self) -> Batch:
        first = not self._queue
        if first:
            self._collect()
        assert self._flat is not None
        idx = self._queue.pop(0)
        td = self._flat[idx.to(self._flat.device)]
        return Batch(td, self.clock, self._progress_remaining(), self.rollouts, first)

    def teardown(self, stage: str) -> None:
        self.final_clock = self.clock

    # --- checkpoint state ------------------------------------------------------------------------------------------
    def _rank_state(self) -> dict[str, Any]:
        if not self.at_boundary:
            raise RuntimeError("prompt-source checkpoints are taken at collection boundaries only")
        return {"pass_start": self._pass_start, "pos": self.pos, "passes": self.passes,
                "started": self._order is not None, "rollouts": self.rollouts,
                "sample_gen": self._sample_gen.get_state(), "mb_gen": self._mb_gen.get_state(),
                "rng": rng_state(trainer_device(self))}

    def _load_rank_state(self, state: dict[str, Any]) -> None:
        self._perm_gen.set_state(state["pass_start"])
        self._pass_start = state["pass_start"]
        self._order = torch.randperm(len(self.pool), generator=self._perm_gen) if state["started"] else None
        self.pos, self.passes, self.rollouts = state["pos"], state["passes"], state["rollouts"]
        self._sample_gen.set_state(state["sample_gen"])
        self._mb_gen.set_state(state["mb_gen"])
        set_rng_state(state["rng"], trainer_device(self))

    # --- evaluation ------------------------------------------------------------------------------------------------
    def eval_rollout(self, seed: int) -> tuple[list[str], list[str], TensorDict]:
        """Held-out prompts, their sampled responses and the rollout (one sample each, fixed seed): nothing here
        draws from the training streams or the global RNG."""
        self._ensure_task()
        prompts = list(self.task.prompts("test", self.eval_prompts, self.seed))
        td = self.sample(prompts, list(range(len(prompts))), seed, trainer_device(self))
        tok = self.tokenizer
        mask = td["response_mask"]
        tokens = td["input_ids"][:, -mask.shape[1]:]
        responses = tok.batch_decode(torch.where(mask, tokens, tok.pad_token_id), skip_special_tokens=True)
        return prompts, responses, td


class PromptEvaluation(PeriodicEvaluation):
    """Every ``eval.every`` prompts and at the end (rank 0; every rank samples under FSDP): sample one response per
    held-out prompt, log ``eval/true_score`` (the task's hidden score), ``eval/reward`` (the reward model) and
    ``eval/kl`` (summed log-ratio to the reference), print one line, and write the first prompt/response pairs as the
    MLflow text artifact ``samples/eval-<clock>.txt``. A failure to log the artifact warns once and never stops the
    run."""

    def __init__(self, cfg: EvalConfig, seed: int, budget_reached: Callable[[], bool]) -> None:
        super().__init__(cfg, seed, budget_reached)
        self._warned = False

    def run(self, trainer: L.Trainer, pl_module: Any) -> None:
        from lrl.lm.sharding import sharded

        if not trainer.is_global_zero and not sharded(pl_module):
            return
        source: Any = getattr(trainer, "datamodule", None)
        clock = source.clock
        if self.last is not None and self.last["clock"] == clock:
            return
        # sharded models: every rank samples the same prompts (each forward gathers layers from all ranks)
        prompts, responses, td = source.eval_rollout(self.seed)
        scored = pl_module.score_rollout(td)
        if not trainer.is_global_zero:
            self.last = {"clock": clock}
            return
        scores = td["true_score"].float()
        true = scores.mean().item()
        # the hidden true score is the task's return: eval/return_mean too, so sweeps, seeds and reports work as
        # for the environment algorithms
        self.last = {"clock": clock, "true_score": true, "return_mean": true, "return_std": scores.std().item(),
                     "episodes": len(prompts), "reward": scored["reward"].mean().item(),
                     "kl": scored["kl"].mean().item()}
        metrics = {"eval/true_score": true, "eval/return_mean": true, "eval/return_std": self.last["return_std"],
                   "eval/reward": self.last["reward"], "eval/kl": self.last["kl"]}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=clock)
        log.info("eval @ %s prompts: true score %.3f, reward %.3f, KL %.3f (%d held-out prompts)", f"{clock:,}",
                 true, self.last["reward"], self.last["kl"], len(prompts))
        lines = [f"# eval @ {clock} prompts: true score {true:.4f}, reward {self.last['reward']:.4f}, "
                 f"KL {self.last['kl']:.4f}"]
        for i in range(min(source.eval_samples_shown, len(prompts))):
            lines.append(f"{prompts[i]!r} -> {responses[i]!r}  (true {td['true_score'][i].item():.3f}, "
                         f"reward {scored['reward'][i].item():.3f})")
        self._log_text("\n".join(lines) + "\n", f"samples/eval-{clock:010d}.txt", trainer)

    def _log_text(self, text: str, name: str, trainer: L.Trainer) -> None:
        for logger in trainer.loggers:
            try:
                run_id, client = getattr(logger, "run_id", None), getattr(logger, "experiment", None)
                if run_id and client is not None and hasattr(client, "log_text"):
                    client.log_text(run_id, text, name)
            except Exception as err:  # tracking must never take a run down
                if not self._warned:
                    log.warning("could not log %s to MLflow (%s); training goes on", name, type(err).__name__)
                    self._warned = True
