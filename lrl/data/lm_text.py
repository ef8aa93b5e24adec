"""Language-model data sources without an environment (docs/lm-rlhf.md), both offline streams like
:mod:`lrl.data.offline` (the clock counts gradient steps or samples; every step is a boundary):

- ``lm-text``: a task's corpus (prompt + response + eos), tokenised once at set-up: ``input_ids``,
  ``attention_mask`` of shape [N, max_length] (right-padded). ``lm-sft`` learns from it.
- ``lm-prefs``: preference data for a reward model. K responses per prompt are sampled from a policy directory
  (``data.policy``, the SFT run's ``model/``) with a KV cache and scored by the task's hidden scorer; the annotator
  sees each score plus Gaussian noise (``noise``) and ranks the K responses by it (a Thurstone annotator: one noisy
  utility per response, so the K responses are ranked consistently). Rows are prompts: ``input_ids``,
  ``attention_mask`` [P, K, max_length], ``utility`` (the noisy annotator's) and ``score`` (the true one) [P, K].
  A held-out set from test prompts comes as the stream ``heldout`` (the whole set in every batch) for accuracy.

The spec's ``id`` names where the tokenizer comes from: the model directory (``data.model`` / ``data.policy``), or
``task:NAME`` when ``lm-text`` trains one on the task's corpus (lrl.lm.models.spec_tokenizer); the LM algorithms
start their models from it. Generation is seeded (the run's seed), so a resumed run regenerates the same data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch

from lrl.contract import ClockUnit, Consumes, Schedule
from lrl.data.dataset import OfflineStream
from lrl.data.offline import OfflineDataModule
from lrl.data.ranked import RankedDataModule
from lrl.errors import RecipeError
from lrl.recipe.schema import EnvConfig
from lrl.spec import Spec


def _lm_spec(source: str, tokenizer: Any, max_length: int) -> Spec:
    return Spec(source, (max_length,), "token", len(tokenizer), obs_kind="tokens", vocab_size=len(tokenizer))


class LMTextDataModule(OfflineDataModule):
    """A task's corpus, tokenised (see the module docstring)."""

    clock_units: ClassVar[tuple[ClockUnit, ...]] = ("steps", "samples")
    needs_env: ClassVar[bool] = False
    provides: ClassVar[tuple[str, ...]] = ("input_ids", "attention_mask")

    def __init__(self, *, env: EnvConfig | None, spec: Spec, seed: int, budget: int, clock_unit: ClockUnit,
                 schedule: Schedule, task: str = "reverse", model: str | None = None, corpus_size: int = 20000,
                 batch_size: int = 64, max_length: int = 16, streams: dict[str, Any] | None = None) -> None:
        """
        Args:
            task: the synthetic task (lrl.lm.task) whose corpus is read.
            model: a transformers causal-LM directory whose tokenizer encodes the corpus and which ``lm-sft``
                starts from; None: a tokenizer trained on the task's corpus and a tiny GPT-2 built from a config.
            corpus_size: texts drawn from the task's corpus (with the run's seed).
            batch_size: texts per gradient step, global across ranks.
            max_length: tokens per text after padding (longer texts are refused).
        """
        RankedDataModule.__init__(self, seed=seed, budget=budget, clock_unit=clock_unit, streams=streams)
        self.spec, self.task, self.corpus_size, self.max_length = spec, task, corpus_size, max_length
        self.main = OfflineStream(name="main", seed=seed, batch_size=batch_size, loader=self._load)
        self.steps = 0

    @classmethod
    def probe_spec(cls, env: EnvConfig | None, args: dict[str, Any]) -> Spec:
        from lrl.lm.models import load_causal_lm, train_tokenizer
        from lrl.lm.task import get_task

        task = get_task(args.get("task", "reverse"))
        if args.get("model") is None:
            return _lm_spec(f"task:{task.name}", train_tokenizer(task), args.get("max_length", 16))
        tokenizer = load_causal_lm(args["model"], "data.model")[1]  # refuses a non-model or mismatched tokenizer
        return _lm_spec(str(args["model"]), tokenizer, args.get("max_length", 16))

    @classmethod
    def check_args(cls, args: dict[str, Any], env: EnvConfig | None, schedule: Schedule, consumes: Consumes,
                   world: int | None, budget: int | None = None) -> None:
        super().check_args(args, env, schedule, consumes, world, budget)
        if env is not None:
            raise RecipeError(f"env: data.name={args.get('name', 'lm-text')} reads a task's text, not an environment; "
                              "remove the env: section")

    def _load(self) -> dict[str, torch.Tensor]:
        from lrl.lm.models import encode, spec_tokenizer
        from lrl.lm.task import get_task

        texts = get_task(self.task).corpus(self.corpus_size, self.seed)
        return encode(spec_tokenizer(self.spec), texts, self.max_length)


class LMPrefsDataModule(LMTextDataModule):
    """Preference data sampled from a policy and ranked by a noisy annotator (see the module docstring)."""

    provides: ClassVar[tuple[str, ...]] = ("input_ids", "attention_mask", "utility", "score")

    def __init__(self, *, env: EnvConfig | None, spec: Spec, seed: int, budget: int, clock_unit: ClockUnit,
                 schedule: Schedule, policy: str, task: str = "reverse", prompts: int = 1000, test_prompts: int = 200,
                 k: int = 4, noise: float = 0.1, temperature: float = 1.0, max_new_tokens: int = 6,
                 batch_size: int = 32, max_length: int = 16, streams: dict[str, Any] | None = None) -> None:
        """
        Args:
            policy: the policy directory responses are sampled from (the ``lm-sft`` run's ``model/``); its tokenizer
                encodes everything and ``lm-reward`` starts from its transformer body.
            task: the synthetic task: prompts and the hidden scorer.
            prompts, test_prompts: train prompts (rows of the main stream) and held-out test prompts.
            k: responses sampled per prompt (K >= 2; the 4-way loss needs K >= 4).
            noise: std of the Gaussian noise the annotator adds to each true score before ranking.
            temperature, max_new_tokens: sampling settings.
            batch_size: prompts (each with its K responses) per gradient step, global across ranks.
            max_length: tokens per prompt + response + eos after padding.
        """
        super().__init__(env=env, spec=spec, seed=seed, budget=budget, clock_unit=clock_unit, schedule=schedule,
                         task=task, batch_size=batch_size, max_length=max_length, streams=streams)
        self.policy, self.n_prompts, self.n_test, self.k, self.noise = policy, prompts, test_prompts, k, noise
        self.temperature, self.max_new_tokens = temperature, max_new_tokens
        self.main = OfflineStream(name="main", seed=seed, batch_size=batch_size, loader=lambda: self._prefs("train"))
        self.streams["heldout"] = OfflineStream(name="heldout", seed=seed + 1, batch_size=test_prompts,
                                                loader=lambda: self._prefs("test"))

    @classmethod
    def probe_spec(cls, env: EnvConfig | None, args: dict[str, Any]) -> Spec:
        from lrl.lm.models import load_causal_lm
        from lrl.lm.task import get_task

        get_task(args.get("task", "reverse"))
        if not args.get("policy"):
            raise RecipeError("data.policy: the policy directory to sample responses from is required (the lm-sft "
                              "run's model/ directory)")
        if not Path(args["policy"]).exists():
            raise RecipeError(f"data.policy={args['policy']}: no such directory; train the SFT stage first "
                              f"(lrl train lm-sft/{args.get('task', 'reverse')} --run-dir DIR) and set "
                              "data.policy=DIR/model")
        tokenizer = load_causal_lm(args["policy"], "data.policy")[1]
        return _lm_spec(str(args["policy"]), tokenizer, args.get("max_length", 16))

    @classmethod
    def check_args(cls, args: dict[str, Any], env: EnvConfig | None, schedule: Schedule, consumes: Consumes,
                   world: int | None, budget: int | None = None) -> None:
        super().check_args(args, env, schedule, consumes, world, budget)
        if args["k"] < 2:
            raise RecipeError(f"data.k={args['k']}: a preference needs at least 2 responses per prompt")
        if args["batch_size"] > args["prompts"]:
            raise RecipeError(f"data.batch_size={args['batch_size']} must be at most data.prompts={args['prompts']}")
        if world and args["test_prompts"] % world:
            raise RecipeError(f"data.test_prompts={args['test_prompts']} must be divisible by the number of "
                              f"processes ({world})")

    def _prefs(self, split: str) -> dict[str, torch.Tensor]:
        from lrl.lm.models import encode, load_causal_lm, sample_responses
        from lrl.lm.task import get_task

        task = get_task(self.task)
        model, tok = load_causal_lm(self.policy, "data.policy")
        device = self.trainer.lightning_module.device if self.trainer is not None else torch.device("cpu")
        model = model.to(device)  # type: ignore[arg-type]
        seed = self.seed + (0 if split == "train" else 1_000_003)
        prompts = task.prompts(split, self.n_prompts if split == "train" else self.n_test, seed)  # type: ignore[arg-type]
        responses = sample_responses(model, tok, prompts, self.k, temperature=self.temperature,
                                     max_new_tokens=self.max_new_tokens, seed=seed)
        score = torch.tensor([[task.score(p, r) for r in rs] for p, rs in zip(prompts, responses, strict=True)])
        noise = torch.randn(score.shape, generator=torch.Generator().manual_seed(seed + 17))
        enc = encode(tok, [p + r for p, rs in zip(prompts, responses, strict=True) for r in rs], self.max_length)
        shape = (len(prompts), self.k, self.max_length)
        return {"input_ids": enc["input_ids"].view(shape), "attention_mask": enc["attention_mask"].view(shape),
                "score": score, "utility": score + self.noise * noise}

    def _built(self) -> bool:
        return self.main.data is not None
