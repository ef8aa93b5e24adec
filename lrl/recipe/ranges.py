"""What values each ``algo:`` / ``data:`` argument may take, beyond its type: one table, keyed by argument name.

Type validation (``bind_section``) lets through values that are well-typed but meaningless: a negative learning
rate, a discount of 1.5, a clip range of 0, a NaN, an empty MLP. Without this table they fail deep inside
training, after the run directory exists, as a traceback. With it, ``lrl validate`` names the key, the value
and the allowed range in one line.

A name means the same thing in every registered class (``tau`` is a Polyak weight wherever it appears), so one
rule per name covers every algorithm and data module. ``tests/unit/test_ranges.py`` checks that every
keyword-only argument of every registered class has a rule here, needs none (bool, Literal), or is listed in
:data:`EXEMPT` with the reason, so a new argument cannot slip in unchecked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from lrl.errors import RecipeError

Kind = Literal["real", "int", "sizes", "choice", "device", "path", "streams"]


@dataclass(frozen=True)
class Rule:
    """The values an argument takes: a finite real or an integer in an interval, a non-empty list of layer
    sizes, one of some names, or a torch device; ``null`` too when ``nullable``."""

    kind: Kind
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # True: low itself is excluded
    high_open: bool = False
    nullable: bool = False
    choices: tuple[str, ...] = ()
    note: str = ""  # why, when the range is not obvious (shown in the error)

    def describe(self) -> str:
        if self.kind == "sizes":
            what = "a non-empty list of integers >= 1"
        elif self.kind == "choice":
            what = "one of " + ", ".join(self._choices())
        elif self.kind == "device":
            what = "a torch device such as cpu, cuda or cuda:1"
        elif self.kind == "path":
            what = "a non-empty file path"
        elif self.kind == "streams":
            what = ("a mapping {name: {path: FILE, batch_size: N >= 1}} or, for a Minari dataset, {name: {dataset: "
                    "ID_OR_DIR, batch_size: N >= 1, max_samples: M >= 1}}")
        else:
            bounded = self.low is not None and self.high is not None  # an interval implies finite
            what = ("an integer" if self.kind == "int" else "a number" if bounded else "a finite number")
            what += self._interval()
        return f"null or {what}" if self.nullable else what

    def _interval(self) -> str:
        lo, hi = self.low, self.high
        if lo is None and hi is None:
            return ""
        if hi is None:
            return f" {'>' if self.low_open else '>='} {_fmt(lo)}"
        if lo is None:
            return f" {'<' if self.high_open else '<='} {_fmt(hi)}"
        return f" in {'(' if self.low_open else '['}{_fmt(lo)}, {_fmt(hi)}{')' if self.high_open else ']'}"

    def _choices(self) -> tuple[str, ...]:
        if self.choices:
            return self.choices
        from lrl.networks.mlp import ACTIVATIONS  # the only open-ended name set today: MLP activations

        return tuple(ACTIVATIONS)

    def accepts(self, raw: Any, value: Any) -> bool:
        """``raw`` as written in the recipe, ``value`` after type validation (``True`` validates as ``1``)."""
        if value is None:
            return self.nullable
        if self.kind == "sizes":
            return (isinstance(value, list) and len(value) > 0 and all(v >= 1 for v in value)
                    and not any(isinstance(v, bool) for v in (raw if isinstance(raw, list | tuple) else [])))
        if self.kind == "choice":
            return value in self._choices()
        if self.kind == "device":
            return _is_device(value)
        if self.kind == "path":
            return isinstance(value, str) and value.strip() != "" and "\x00" not in value
        if self.kind == "streams":
            return isinstance(value, dict) and all(_is_stream(k, v) for k, v in value.items())
        if isinstance(raw, bool):
            return False  # a boolean where a number is meant is a mistake, not 1 or 0
        if self.kind == "real" and not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))


def _fmt(x: float | None) -> str:
    return str(int(x)) if x is not None and float(x).is_integer() else str(x)


def _is_device(value: Any) -> bool:
    import torch

    try:
        torch.device(value)
    except (RuntimeError, TypeError, ValueError):
        return False
    return True


def _is_stream(name: Any, cfg: Any) -> bool:
    """One entry of ``data.streams``: a name, a dataset path (or a Minari dataset id or directory, optionally with
    ``max_samples``) and optionally a batch size >= 1."""
    if not isinstance(name, str) or not name or not isinstance(cfg, dict):
        return False
    source = "dataset" if "dataset" in cfg else "path"
    if set(cfg) - {source, "batch_size", *(("max_samples",) if source == "dataset" else ())}:
        return False
    counts = [cfg.get("batch_size", 1)] + ([cfg["max_samples"]] if cfg.get("max_samples") is not None else [])
    return (PATH.accepts(cfg.get(source), cfg.get(source))
            and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in counts))


def real(*, gt: float | None = None, ge: float | None = None, lt: float | None = None, le: float | None = None,
         null: bool = False, note: str = "") -> Rule:
    """A finite float in the interval given by the bounds (NaN and ±inf never pass)."""
    return Rule("real", gt if gt is not None else ge, lt if lt is not None else le, gt is not None, lt is not None,
                null, note=note)


def integer(*, ge: int, null: bool = False, note: str = "") -> Rule:
    return Rule("int", ge, None, False, False, null, note=note)


RATE = real(gt=0)  # step sizes: a zero or negative step does not learn (or ascends); NaN/inf poison the weights
RATE_OR_NULL = real(gt=0, null=True)  # None = "the same as lr"
UNIT = real(ge=0, le=1)  # discounts, λ of GAE/TD(λ), probabilities
POLYAK = real(gt=0, le=1, note="a target weight of 0 never moves the target")
COEF = real(ge=0)  # loss weights: 0 switches a term off, negative flips its sign
EPS = real(gt=0, note="the optimiser divides by it")
COUNT = integer(ge=1)  # sizes, counts, epochs, intervals
PATH = Rule("path")
FRAMES = integer(ge=0)  # decay lengths: 0 = no decay
SIZES = Rule("sizes", nullable=True)  # None = the algorithm's default MLP

# Keyed by constructor-argument name, across all registered algorithms (`algo:`) and data modules (`data:`).
RULES: dict[str, Rule] = {
    # --- step sizes ----------------------------------------------------------------------------------------------
    "lr": RATE,
    "actor_lr": RATE_OR_NULL,
    "critic_lr": RATE_OR_NULL,  # a2c/sac: None = lr; trpo/npg: a float (None fails the type check first)
    "alpha_lr": RATE_OR_NULL,
    "value_lr": RATE,
    "dual_lr": RATE,  # ppo-kl's α in λ ← λ + α(KL − ε)
    "step_size": real(gt=0, null=True),  # npg/trpo fixed η; None = trust-region step
    # --- discounting and returns ---------------------------------------------------------------------------------
    "gamma": UNIT,
    "gae_lambda": UNIT,
    "critic_lambda": real(ge=0, le=1, null=True),
    # --- targets -------------------------------------------------------------------------------------------------
    "tau": POLYAK,
    "actor_tau": real(gt=0, le=1, null=True, note="a target weight of 0 never moves the target"),
    "target_update_every": COUNT,
    "policy_delay": COUNT,
    "n_critics": COUNT,
    "target_policy_noise": real(ge=0),  # σ̃, fraction of the action half-range; 0 = no smoothing
    "target_noise_clip": real(ge=0),
    # --- exploration ---------------------------------------------------------------------------------------------
    "eps_start": UNIT,  # ε of ε-greedy: a probability
    "eps_end": UNIT,
    "eps_decay_frames": FRAMES,
    "exploration_std": real(ge=0),  # σ as a fraction of the action half-range; 0 = greedy
    "exploration_std_final": real(ge=0, null=True),
    "exploration_decay_frames": FRAMES,
    "ou_theta": real(ge=0),  # OU mean reversion; 0 = a random walk
    "ou_dt": real(gt=0),
    # --- policy-gradient losses ----------------------------------------------------------------------------------
    "clip_range": real(gt=0),  # ε of the clipped surrogate
    "clip_range_vf": real(gt=0, null=True),
    "vf_coef": COEF,
    "ent_coef": COEF,
    "max_grad_norm": real(gt=0, null=True),  # None = no clipping; 0 would zero every gradient
    "target_kl": real(gt=0, null=True),
    "kl_coef": COEF,  # β_0 / λ_0
    "kl_target": real(gt=0, null=True),  # δ / ε: the adaptive rule divides by it; rlhf-ppo: None = constant β
    "kl_horizon": COUNT,  # rlhf-ppo: Ziegler's controller horizon, in sequences
    "ptx_coef": COEF,  # rlhf-ppo: λ of PPO-ptx
    "temperature": real(gt=0, note="logits are divided by it"),
    "reward_path": Rule("path", note="a transformers sequence-classification directory (num_labels=1)"),
    "adaptive_tolerance": real(gt=1, note="the adaptive rule compares KL with δ·tol and δ/tol"),
    "adaptive_factor": real(gt=1, note="β is multiplied or divided by it"),
    "min_weight": real(ge=0, null=True),  # importance weights are >= 0
    "max_weight": real(gt=0, null=True),
    "sync_every": COUNT,
    "policy_epochs": integer(ge=1, null=True),  # offpg: None = all data.epochs
    "l2_coef": COEF,  # bc: weight of the explicit L2 penalty on the policy's weights
    # --- trust region (npg/trpo) ---------------------------------------------------------------------------------
    "max_kl": real(gt=0),
    "backtrack_coef": real(gt=0, lt=1),
    "max_backtracks": integer(ge=0),  # 0: try the full step only
    "cg_iterations": COUNT,
    "cg_residual_tol": real(ge=0),
    "damping": real(ge=0),
    "fvp_fraction": real(gt=0, le=1),
    "critic_epochs": COUNT,
    "critic_minibatch_size": integer(ge=1, null=True),  # None = full batch
    # --- SAC -----------------------------------------------------------------------------------------------------
    "alpha": real(gt=0, note="SAC learns log α"),
    "target_entropy": real(null=True),
    "log_std_min": real(),
    "log_std_max": real(),
    # --- optimisers and networks ---------------------------------------------------------------------------------
    "adam_eps": EPS,
    "optim_eps": EPS,
    "rms_alpha": real(ge=0, lt=1, note="RMSprop's smoothing; 1 never updates the square average"),
    "log_std_init": real(),
    "hidden": SIZES,
    "critic_hidden": SIZES,
    "activation": Rule("choice"),  # the names in lrl.networks.mlp.ACTIVATIONS
    # --- data: on-policy -----------------------------------------------------------------------------------------
    "frames_per_batch": COUNT,
    "minibatch_size": integer(ge=1, null=True),  # None = the whole rollout
    "epochs": COUNT,
    # --- data: replay --------------------------------------------------------------------------------------------
    "buffer_size": COUNT,
    "batch_size": COUNT,
    "learning_starts": integer(ge=0),  # 0: learn from the first step
    "frames_per_step": COUNT,
    "updates_per_step": COUNT,
    "buffer_device": Rule("device", nullable=True),  # None = the module's device
    # --- data: offline and named streams (docs/contract.md §5) ------------------------------------------------------
    "path": Rule("path"),  # a dataset file; whether it exists and holds a dataset is checked when it is read
    # a Minari dataset id or directory, checked when its metadata is read; null where a source makes it optional
    "dataset": Rule("path", nullable=True, note="a Minari dataset id or directory"),
    "max_samples": integer(ge=1, null=True),  # None = every transition of the dataset
    "streams": Rule("streams", nullable=True),
    # --- data: prompts for language models (lrl/lm/generation.py) ----------------------------------------------------
    "task": Rule("path", note="a task name (lrl.lm.task)"),
    "prompts_per_batch": COUNT,
    "samples_per_prompt": COUNT,
    "max_new_tokens": COUNT,
    "train_prompts": COUNT,
    "eval_prompts": COUNT,
    "eval_samples_shown": integer(ge=0),  # 0: no prompt/response pairs in the evaluation's text artifact
    "ptx_batch_size": integer(ge=0),  # 0: no PPO-ptx stream
    "ptx_corpus": COUNT,
    # --- data: DAgger (docs/dagger.md) -----------------------------------------------------------------------------
    "expert": Rule("path", note="an lrl run directory, a .ckpt file or package.module:function"),
    "episodes_per_round": COUNT,
    "label_budget": integer(ge=1, null=True),  # None = no limit
    "labels_per_round": integer(ge=1, null=True),  # None = whole episodes
    "steps_per_round": COUNT,
    "beta": UNIT,  # a probability: executing the expert's action
    "beta_decay": UNIT,  # β_i = β·decay^i: 1 keeps β, 0 leaves the expert only round 0
    "beta_rounds": COUNT,  # the linear schedule reaches 0 after this many rounds
    # --- data: hindsight relabelling (docs/gcbc.md) ----------------------------------------------------------------
    "horizon": integer(ge=1, null=True),  # future goals at most this many steps ahead; None = any later step
    "random_horizon": integer(ge=1, null=True),  # the same in the random rounds
    "noise": real(ge=0),  # continuous: Gaussian std as a fraction of the half action range; discrete: a probability
    "random_rounds": COUNT,  # round 0 must act at random: the untrained learner has nothing to show
    "max_transitions": integer(ge=1, null=True),  # FIFO cap on the aggregate; None = keep all
    # --- language models (docs/lm-rlhf.md) ----------------------------------------------------------------------
    "n_layer": COUNT,  # the tiny GPT-2 built from a config
    "n_embd": COUNT,  # (transformers refuses n_embd not divisible by n_head, in one line at build time)
    "n_head": COUNT,
    "n_positions": COUNT,
    "eval_every": COUNT,  # lm-reward: held-out accuracy every N gradient steps
    "model": Rule("path", nullable=True, note="a transformers model directory; null builds a tiny GPT-2"),
    "policy": Rule("path", note="a transformers causal-LM directory (the lm-sft run's model/)"),
    "corpus_size": COUNT,
    "max_length": integer(ge=2),  # a token and end-of-sequence at least
    "prompts": COUNT,
    "test_prompts": COUNT,
    "k": integer(ge=2, note="a preference compares at least 2 responses"),
}

# Keyword-only arguments that need no rule although their type alone would not say so. Each with the reason.
EXEMPT: dict[str, str] = {
    # Injected by the launcher, never read from a recipe (on the data-redesign branch; listed ahead of the merge).
    "schedule": "injected by the launcher",
    "spec": "injected by the launcher",
    "collect_kwargs": "env constructor arguments: checked by building the collection env when the spec is probed",
    "task": "an LM task name: lrl.lm.task.get_task refuses an unknown one in one line (naming the known tasks) "
            "when the spec is probed",
}


def check(section: str, name: str, raw: Any, value: Any) -> None:
    """Raise one :class:`RecipeError` line if ``value`` (validated from ``raw``) is outside ``name``'s range."""
    rule = RULES.get(name)
    if rule is None or rule.accepts(raw, value):
        return
    note = f"; {rule.note}" if rule.note else ""
    raise RecipeError(f"{section}.{name}: must be {rule.describe()}{note} (got {raw!r})")
