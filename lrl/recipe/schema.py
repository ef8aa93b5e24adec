"""Typed recipe sections and the binding of `algo:` / `data:` / `trainer:` to signatures.

The fixed sections are pydantic models that forbid unknown keys. The `algo:` and `data:` sections are bound to
the keyword-only constructor arguments of the registered classes, with each value checked against the
argument's annotation, so a recipe can never carry a hyperparameter that the code silently ignores.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import types
import typing
import unicodedata
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

import lrl.recipe.ranges as ranges
from lrl.contract import CLOCK_UNITS, ClockUnit
from lrl.errors import RecipeError


def _takes_int(annotation: Any) -> bool:
    """``int`` or ``int | None``: an integer setting with no float or string reading of its own."""
    if annotation is int:
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = set(typing.get_args(annotation)) - {type(None)}
        return args == {int}
    return False


def exact_int(value: Any) -> Any:
    """Integers as RL Zoo users type them: ``1e5`` (a string to YAML 1.1) or ``1.0e5`` (a float) that is an exact
    integer becomes that integer; a non-integer number (``2.5``, ``1e-3``) raises ``ValueError``; anything else is
    left for the type check."""
    if isinstance(value, bool | int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+\s*|\s*[+-]?\d*\.\d*\s*", value):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return value
        if number.adjusted() > 30 or number != number.to_integral_value():  # 1e999999999 would not fit memory
            raise ValueError("must be an integer" if number.adjusted() <= 30 else "must be an integer below 1e30")
        return int(number)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")) or not value.is_integer():
            raise ValueError("must be an integer")
        return int(value)
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("*", mode="before")
    @classmethod
    def _integers_in_float_form(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        return exact_int(value) if field is not None and _takes_int(field.annotation) else value

    @model_validator(mode="before")
    @classmethod
    def _one_name_per_setting(cls, data: Any) -> Any:
        """A setting under its name and its pre-Contract-v2 alias at once (``every`` and ``every_frames``) would let
        one silently win: refuse it."""
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                alias = field.validation_alias
                if isinstance(alias, AliasChoices):
                    given = [str(a) for a in alias.choices if a in data]
                    if len(given) > 1:
                        raise ValueError(f"{' and '.join(given)} are the same setting; keep {name} only")
        return data


class ShapingBonus(_Section):
    """A sub-goal bonus: ``bonus`` paid once per episode, on the first step whose next observation satisfies
    ``when`` (a named predicate of :mod:`lrl.data.shaping` or ``package.module:function``). Not potential-based:
    it can change the optimal policy (docs/shaping.md)."""

    when: str = Field(..., min_length=1)
    bonus: float = Field(..., allow_inf_nan=False)


class ShapingConfig(_Section):
    """Reward shaping of the training envs (docs/shaping.md): potential-based F = γΦ(s') − Φ(s) (Ng, Harada &
    Russell 1999) with Φ = ``scale`` × ``potential``, and/or sub-goal ``bonuses``. Evaluation keeps the env's own
    reward."""

    potential: str | None = Field(None, min_length=1, description="a named potential or package.module:function")
    scale: float = Field(1.0, allow_inf_nan=False, description="Φ = scale × potential(observations)")
    gamma: float | None = Field(None, ge=0, le=1, description="the learner's discount: filled in from algo.gamma")
    bonuses: list[ShapingBonus] = Field(default_factory=list)

    @model_validator(mode="after")
    def _something(self) -> ShapingConfig:
        if self.potential is None and not self.bonuses:
            raise ValueError("set potential (potential-based shaping) or bonuses (sub-goal bonuses), or remove "
                             "env.shaping")
        return self


class CurriculumStage(_Section):
    """One stage of a curriculum: gymnasium ``make`` keyword arguments (the sub-env is rebuilt at its next reset;
    ``max_episode_steps`` too) and/or attributes set on the unwrapped env at its next reset (the env's own values
    where a stage does not name an attribute another stage sets)."""

    kwargs: dict[str, Any] = Field(default_factory=dict)
    attrs: dict[str, Any] = Field(default_factory=dict)


class CurriculumConfig(_Section):
    """A fixed sequence of stages (Rossi ch. 12): advance one stage when the ``metric`` over the last ``window``
    training episodes of the current stage reaches ``threshold``; never skip one (docs/shaping.md)."""

    stages: list[CurriculumStage] = Field(..., min_length=2)
    metric: Literal["mean_return", "success_rate"] = "mean_return"
    window: int = Field(20, ge=1, description="episodes of the current stage the metric is taken over")
    threshold: float = Field(..., allow_inf_nan=False)


class WrapperConfig(_Section):
    """A user's gymnasium wrapper around each env (docs/environments.md): ``package.module:ClassName``, the keyword
    arguments of its constructor, and whether evaluation envs leave it out. A bare string is a wrapper without
    kwargs."""

    wrapper: str = Field(..., description="package.module:ClassName, a gymnasium.Wrapper subclass")
    kwargs: dict[str, Any] = Field(default_factory=dict)
    train_only: bool = Field(False, description="training envs only; evaluation envs go without it")

    @model_validator(mode="before")
    @classmethod
    def _bare_string(cls, data: Any) -> Any:
        return {"wrapper": data} if isinstance(data, str) else data

    @field_validator("wrapper")
    @classmethod
    def _import_path(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", value):
            raise ValueError("expected an import path package.module:ClassName")
        return value


class AtariConfig(_Section):
    """The standard Atari preprocessing (docs/atari.md; Machado et al. 2018, RL Zoo's ``AtariWrapper``): the env is
    made with ``frameskip=1`` and ``repeat_action_probability`` (0: RL Zoo's ``NoFrameskip-v4`` semantics; 0.25:
    the v5 sticky actions), then gymnasium's ``AtariPreprocessing`` (no-op resets, frame skip with a max over the
    last two frames, grey, resized) and ``FrameStackObservation``. Life loss as episode end and reward clipping are
    for training envs only: evaluation plays the full game and reports its score."""

    frame_skip: int = Field(4, ge=1, le=100)
    screen_size: int = Field(84, ge=8, le=1024, description="square side in pixels")
    frame_stack: int = Field(4, ge=1, le=64)
    noop_max: int = Field(30, ge=0, le=100_000)
    terminal_on_life_loss: bool = Field(True, description="training envs only (SB3's EpisodicLifeEnv)")
    clip_reward: bool = Field(True, description="sign of the reward, training envs only")
    fire_reset: bool | Literal["auto"] = Field("auto", description="press FIRE after a reset; auto: where the game "
                                                                   "has a FIRE action")
    repeat_action_probability: float = Field(0.0, ge=0, le=1)


class EnvConfig(_Section):
    """Where experience comes from: a gymnasium id, vectorised in-process by default."""

    id: str = Field(..., min_length=1)
    num_envs: int = Field(1, ge=1, description="global number of envs, split evenly across ranks")
    vectorization: Literal["sync", "async"] = "sync"
    normalize_obs: bool = False
    normalize_reward: bool = False
    clip_obs: float = Field(10.0, gt=0)
    clip_reward: float = Field(10.0, gt=0)
    max_episode_steps: int | None = Field(None, ge=1)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    shaping: ShapingConfig | None = None  # training envs only; evaluation keeps the env's own reward
    curriculum: CurriculumConfig | None = None  # training envs only; evaluation runs the env as id/kwargs say
    wrappers: list[WrapperConfig] = Field(default_factory=list, description="innermost first, around gym.make")
    atari: AtariConfig | None = None  # the Atari preprocessing, innermost (docs/atari.md)

    @model_serializer(mode="wrap")
    def _without_unset_sections(self, handler: Any) -> Any:
        """A recipe without shaping, curriculum, atari or wrappers dumps as before (no ``shaping: null`` in every run's
        recipe)."""
        out = handler(self)
        for key in ("shaping", "curriculum", "atari"):
            if isinstance(out, dict) and out.get(key) is None:
                out.pop(key, None)
        if isinstance(out, dict) and out.get("wrappers") == []:
            out.pop("wrappers")
        return out


class BudgetConfig(_Section):
    """The run's length in exactly one clock unit (docs/contract.md §4): the unit is the recipe's clock, and
    ``eval.every``, ``checkpoint.every``, ``tracking.log_every``, progress and the MLflow step axis count in it."""

    frames: int | None = Field(None, ge=1, description="environment frames, global across ranks")
    steps: int | None = Field(None, ge=1, description="gradient steps")
    samples: int | None = Field(None, ge=1, description="dataset samples consumed, global across ranks")
    tokens: int | None = Field(None, ge=1, description="generated tokens, global across ranks")
    prompts: int | None = Field(None, ge=1, description="prompts completed, global across ranks")

    @model_validator(mode="after")
    def _one_unit(self) -> BudgetConfig:
        set_ = [u for u in CLOCK_UNITS if getattr(self, u) is not None]
        if len(set_) != 1:
            raise ValueError(f"set exactly one of {', '.join(CLOCK_UNITS)} (got {', '.join(set_) or 'none'})")
        return self

    @property
    def unit(self) -> ClockUnit:
        return next(u for u in CLOCK_UNITS if getattr(self, u) is not None)

    @property
    def amount(self) -> int:
        return int(getattr(self, self.unit))


def _every(name: str, default: int, what: str) -> Any:
    # ``every_frames`` / ``log_every_frames``: the names before the clock became general; still read
    return Field(default, ge=0 if default == 0 else 1, description=what,
                 validation_alias=AliasChoices(name, f"{name}_frames"))


class EvalConfig(_Section):
    every: int = _every("every", 0, "evaluate every N clock units (0: only at the end)")
    episodes: int = Field(10, ge=1)
    deterministic: bool = True
    final: bool = True
    video: bool = Field(True, description="record one episode per evaluation as an MLflow artifact "
                        "videos/eval-<clock>.gif (docs/videos-and-models.md)")


class CheckpointConfig(_Section):
    every: int = _every("every", 0, "checkpoint every N clock units (0: only last.ckpt)")
    every_minutes: float = Field(10.0, ge=0, allow_inf_nan=False,
                                 description="also write last.ckpt when this much wall-clock time has passed since the "
                                 "last checkpoint, and after a new run's first rollout (0: neither)")


class TrackingConfig(_Section):
    experiment: str = Field("lrl", min_length=1, max_length=500, description="MLflow experiment name")
    run_name: str | None = None
    tracking_uri: str | None = None
    log_every: int = _every("log_every", 2048, "log metrics every N clock units")
    log_model: bool = Field(True, description="log the finished run's deterministic policy as an MLflow pyfunc "
                            "model (artifact path model)")
    register_model: str | None = Field(None, min_length=1, description="register the logged model under this name "
                                       "in the MLflow model registry")


class SyntheticAnnotatorConfig(_Section):
    """B-Pref's simulated teacher (docs/rlhf.md): Bradley-Terry on the TRUE segment returns."""

    beta: float | None = Field(None, gt=0, allow_inf_nan=False,
                               description="rationality: P(left) = sigmoid(beta (R1 - R2)); null: always the larger")
    mistake: float = Field(0.0, ge=0, le=1, description="probability of flipping a strict answer")
    equal_threshold: float = Field(0.0, ge=0, allow_inf_nan=False,
                                   description="|R1 - R2| at or below this: 'equal'")
    skip: float = Field(0.0, ge=0, lt=1, description="probability of answering 'skip' (can't tell)")


class HumanAnnotatorConfig(_Section):
    wait_seconds: float = Field(3600.0, gt=0, allow_inf_nan=False,
                                description="how long a new run waits for its first labels before it stops (exit 2)")
    poll_seconds: float = Field(2.0, gt=0, allow_inf_nan=False, description="how often the store is read meanwhile")


class RlhfConfig(_Section):
    """Learning from preferences (docs/rlhf.md): the learner trains on a reward model r̂(s, a) fitted to labelled
    segment pairs; the environment's reward is only logged (train/true_return)."""

    annotator: Literal["synthetic", "human", "none"] = "synthetic"
    synthetic: SyntheticAnnotatorConfig = SyntheticAnnotatorConfig()
    human: HumanAnnotatorConfig = HumanAnnotatorConfig()
    labels: int = Field(1000, ge=1, le=10_000_000, description="queries asked over the run (the label budget)")
    initial_fraction: float = Field(0.25, ge=0, le=1, description="share of the labels asked at the first update")
    label_until: float = Field(0.5, gt=0, le=1, description="the rest is asked linearly until this fraction of the "
                               "budget")
    segment_length: int = Field(25, ge=1, le=10_000, description="k, steps per segment")
    window: int = Field(50, ge=1, le=1_000_000, description="steps per env gathered before segments are cut")
    segments_per_window: int = Field(64, ge=1, le=1_000_000, description="segments cut from each window")
    pool: int = Field(2000, ge=2, le=1_000_000, description="recent segments queries are drawn from")
    selection: Literal["random", "disagreement"] = "random"
    candidates: int = Field(10, ge=1, le=1000, description="disagreement: candidate pairs per query")
    termination: Literal["absorbing", "keep"] = Field(
        "absorbing", description="absorbing: a learned reward for the state after termination; the learner gets "
        "(r - r_abs) / max(|r_abs|, 1), so ending an episode is worth what the labels say; keep: segments end at "
        "termination (their absorbed steps earn nothing) and the learner gets r itself")
    update_every: int = Field(10000, ge=1, description="frames between reward-model updates")
    epochs: int = Field(20, ge=1, le=100_000, description="passes over the labels per update")
    pretrain_epochs: int = Field(100, ge=1, le=100_000, description="passes at the first update")
    members: int = Field(3, ge=1, le=64, description="ensemble size")
    hidden: list[int] = Field(default_factory=lambda: [64, 64])
    dropout: float = Field(0.0, ge=0, lt=1)
    lr: float = Field(1e-3, gt=0, le=1, allow_inf_nan=False)
    batch_size: int = Field(64, ge=1, le=1_000_000)
    l2: float = Field(1e-4, ge=0, allow_inf_nan=False, description="initial l2 coefficient")
    l2_target: Literal["validation", "regularisation"] = Field(
        "validation", description="validation: keep val loss in [1.1, 1.5] x train loss (Christiano et al.); "
        "regularisation: keep the l2 loss in [1, 1.5] x train loss (Rossi's wording)")
    adapt_l2: bool = True
    val_fraction: float = Field(0.2, ge=0, lt=1, description="share of labelled pairs held out for validation")
    reference: int = Field(2048, ge=2, le=1_000_000, description="(s, a) in the normalisation reference batch")

    @field_validator("hidden")
    @classmethod
    def _widths(cls, value: list[int]) -> list[int]:
        if not value or any(h < 1 or h > 65536 for h in value):
            raise ValueError("must be a non-empty list of layer widths in [1, 65536]")
        return value

    @model_validator(mode="after")
    def _fits(self) -> RlhfConfig:
        if self.segment_length > self.window:
            raise ValueError(f"segment_length={self.segment_length} must be at most window={self.window}")
        return self


# Trainer arguments that lrl sets itself: frames are the clock and lrl owns checkpoints and logging.
RESERVED_TRAINER_KEYS = {
    "callbacks", "logger", "max_epochs", "min_epochs", "max_steps", "min_steps", "max_time",
    "limit_train_batches", "enable_checkpointing", "default_root_dir", "use_distributed_sampler",
    "num_sanity_val_steps", "val_check_interval", "check_val_every_n_epoch", "limit_val_batches",
    "reload_dataloaders_every_n_epochs", "gradient_clip_val", "gradient_clip_algorithm",
    "enable_progress_bar", "enable_model_summary", "log_every_n_steps",  # passed by the launcher itself
}
TRAINER_DEFAULTS: dict[str, Any] = {"accelerator": "auto", "devices": 1, "strategy": "auto", "precision": "32-true"}


class Recipe(_Section):
    name: str = Field(..., description="names the run directory runs/<name>/ and, by default, the MLflow run")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="numpy's and Lightning's seed range")
    algo: dict[str, Any]
    env: EnvConfig | None = None  # none for sources without an environment (an offline dataset)
    data: dict[str, Any] = Field(default_factory=dict)
    budget: BudgetConfig
    trainer: dict[str, Any] = Field(default_factory=dict)
    eval: EvalConfig = EvalConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    tracking: TrackingConfig = TrackingConfig()
    rlhf: RlhfConfig | None = None  # learning from preferences (docs/rlhf.md)

    @model_validator(mode="after")
    def _rlhf_needs_env(self) -> Recipe:
        if self.rlhf is None:
            return self
        if self.env is None:
            raise ValueError("rlhf needs an env: segments are cut from the policy's rollouts")
        if self.env.normalize_reward:
            raise ValueError("rlhf replaces the env's reward by the learned one: remove env.normalize_reward")
        if self.env.normalize_obs:
            raise ValueError("rlhf: the reward model sees raw observations; remove env.normalize_obs")
        if self.env.shaping is not None:
            raise ValueError("rlhf: the env's reward is not learned from, so env.shaping would do nothing; remove it")
        if self.data.get("name", "onpolicy") not in ("onpolicy", "replay"):
            raise ValueError(f"rlhf works with data.name onpolicy or replay, not {self.data.get('name')!r}")
        return self

    @field_validator("name")
    @classmethod
    def _filename_safe(cls, name: str) -> str:
        """The name becomes a directory: refuse what would escape ``runs/`` or that no file system can hold."""
        if not name:
            raise ValueError("must not be empty")
        if name in (".", "..") or "/" in name or "\\" in name:
            raise ValueError("must be a file name: no '/', '\\', and not '.' or '..'")
        if any(unicodedata.category(c) in ("Cc", "Cs") for c in name):
            raise ValueError("must not contain control characters")
        if len(name.encode("utf-8")) > 255:
            raise ValueError("must be at most 255 bytes long (a file-name limit)")
        return name

    def to_dict(self) -> dict[str, Any]:
        out = self.model_dump(mode="json")
        out["budget"] = {k: v for k, v in out["budget"].items() if v is not None}
        if out["env"] is None:
            del out["env"]
        if out["rlhf"] is None:
            del out["rlhf"]
        return out


# Keys of the ``algo:`` section that the launcher handles itself, not the algorithm's constructor: ``name`` picks
# the class; ``init_from`` (a run directory or checkpoint) starts the policy from another run's (docs/bc.md).
ALGO_RESERVED = ("name", "init_from")


def algo_arguments(algo: dict[str, Any]) -> dict[str, Any]:
    """The constructor's keyword arguments in a resolved ``algo:`` section (without :data:`ALGO_RESERVED`)."""
    return {k: v for k, v in algo.items() if k not in ALGO_RESERVED}


def format_validation_error(err: ValidationError, prefix: str = "") -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in (prefix, *first["loc"]) if p != "")
    if first["type"] == "extra_forbidden":
        return f"{loc}: unknown key"
    if first["type"] == "missing":
        return f"{loc}: required key is missing"
    msg = first["msg"].removeprefix("Value error, ")  # a validator's own words, without pydantic's prefix
    return f"{loc}: {msg} (got {first.get('input')!r})"


def bindable_params(cls: type, exclude: set[str]) -> dict[str, inspect.Parameter]:
    """Keyword-only arguments of ``cls.__init__`` that a recipe may set."""
    sig = inspect.signature(cls.__init__)  # type: ignore[misc]
    return {
        n: p for n, p in sig.parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and n not in exclude
    }


def bind_section(section: str, values: dict[str, Any], cls: type, exclude: set[str]) -> dict[str, Any]:
    """Check ``values`` against ``cls``'s keyword-only signature; return them with defaults filled in."""
    params = bindable_params(cls, exclude)
    hints = typing.get_type_hints(cls.__init__)  # type: ignore[misc]
    unknown = sorted(set(values) - set(params))
    if unknown:
        raise RecipeError(
            f"{section}.{unknown[0]}: unknown key for {cls.__name__}; known keys: {', '.join(sorted(params))}"
        )
    out: dict[str, Any] = {}
    for name, p in params.items():
        if name in values:
            hint = hints.get(name, Any)
            try:
                value = exact_int(values[name]) if _takes_int(hint) else values[name]
                out[name] = TypeAdapter(hint).validate_python(value)
            except ValueError as err:  # pydantic's ValidationError is a ValueError too
                msg = err.errors()[0]["msg"] if isinstance(err, ValidationError) else str(err)
                raise RecipeError(f"{section}.{name}: {msg} (got {values[name]!r})") from None
            ranges.check(section, name, value, out[name])
        elif p.default is inspect.Parameter.empty:
            raise RecipeError(f"{section}.{name}: required key is missing")
        else:
            out[name] = p.default
    return out


ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "tpu", "auto")


# lrl's observations, actions and rollouts are float32: precisions that cast the module's weights ("64-true",
# "16-true", "bf16-true", transformer-engine) fail at the first forward pass with a dtype mismatch. Mixed precision
# autocasts inside the module and works.
SUPPORTED_PRECISIONS = ("32-true", "16-mixed", "bf16-mixed")


def _precisions() -> tuple[Any, ...]:
    """Lightning's accepted ``precision`` values that lrl supports, with their aliases ("32", 32, "bf16", ...)."""
    try:
        from lightning.fabric.connector import _PRECISION_INPUT, _PRECISION_INPUT_STR_ALIAS_CONVERSION
    except ImportError:  # pragma: no cover - private names; Lightning still checks when the Trainer is built
        return SUPPORTED_PRECISIONS
    accepted = [v for arg in typing.get_args(_PRECISION_INPUT) for v in typing.get_args(arg)]
    canonical = {v: _PRECISION_INPUT_STR_ALIAS_CONVERSION.get(str(v), v) for v in accepted}
    return tuple(v for v in accepted if canonical[v] in SUPPORTED_PRECISIONS)


def _devices_ok(devices: int | str | list[int]) -> bool:
    """Lightning's forms: a count >= 1, -1 or "auto" (all), distinct indices as a list or "0,1" string."""
    if isinstance(devices, int):
        return devices >= 1 or devices == -1
    if isinstance(devices, list):
        return bool(devices) and all(i >= 0 for i in devices) and len(set(devices)) == len(devices)
    text = devices.strip()
    if text in ("auto", "-1"):
        return True
    if re.fullmatch(r"[0-9]+", text):
        return int(text) >= 1
    if re.fullmatch(r"[0-9]+(,[0-9]+)*,?", text):
        ids = [int(i) for i in text.rstrip(",").split(",")]
        return len(set(ids)) == len(ids)
    return False


def check_trainer(values: dict[str, Any]) -> dict[str, Any]:
    import lightning
    from lightning.pytorch.strategies import StrategyRegistry

    allowed = set(inspect.signature(lightning.Trainer.__init__).parameters) - {"self"}
    for key in values:
        if key in RESERVED_TRAINER_KEYS:
            raise RecipeError(f"trainer.{key}: set by lrl itself (frames are the clock; lrl owns checkpoints, "
                              "logging and progress output); remove it from the recipe")
        if key not in allowed:
            raise RecipeError(f"trainer.{key}: unknown key for lightning.Trainer")
    checks: dict[str, Any] = {
        "accelerator": str, "strategy": str, "precision": str | int, "devices": int | str | list[int],
        "num_nodes": int, "deterministic": bool | str, "benchmark": bool | None,
        "accumulate_grad_batches": int,
    }
    out = {**TRAINER_DEFAULTS, **values}
    for key, typ in checks.items():
        if key in out:
            try:
                out[key] = TypeAdapter(typ).validate_python(out[key], strict=True)
            except ValidationError:
                expected = getattr(typ, "__name__", typ)
                raise RecipeError(f"trainer.{key}: expected {expected}, got {out[key]!r}") from None
    precisions = _precisions()
    strategies = ("auto", *StrategyRegistry.available_strategies())
    ranges: list[tuple[str, bool, str]] = [
        ("devices", _devices_ok(out["devices"]),
         "a count >= 1, -1 or 'auto' (all), or a non-empty list of distinct device indices >= 0"),
        ("num_nodes", out.get("num_nodes", 1) >= 1, "an integer >= 1"),
        ("accelerator", out["accelerator"] in ACCELERATORS, "one of " + ", ".join(ACCELERATORS)),
        ("strategy", out["strategy"] in strategies, "'auto' or one of Lightning's strategy names: ddp, fsdp, ..."),
        ("precision", out["precision"] in precisions,
         f"one of {', '.join(SUPPORTED_PRECISIONS)} or their aliases 32, 16, bf16 (lrl's data are float32; "
         "precisions that cast the weights, such as 64-true or bf16-true, are not supported)"),
        ("deterministic", out.get("deterministic") in (True, False, "warn"), "true, false or 'warn'"),
    ]
    for key, ok, allowed_values in ranges:
        if key in out and not ok:
            raise RecipeError(f"trainer.{key}: must be {allowed_values} (got {out[key]!r})")
    if any(k in out["strategy"] for k in ("spawn", "fork", "notebook")):  # ddp_spawn, ddp_fork, ddp_notebook, ...
        raise RecipeError(f"trainer.strategy={out['strategy']}: not supported; spawn/fork launchers train in child "
                          "processes, while lrl reads frames, evaluation and interruption in the launching one "
                          "(ddp_fork reported 'done: 0 frames'); use ddp")
    xla = out["accelerator"] == "tpu" or any(k in out["strategy"] for k in ("xla", "tpu"))
    if xla and importlib.util.find_spec("torch_xla") is None:  # Lightning raises ModuleNotFoundError at build time
        key = "accelerator" if out["accelerator"] == "tpu" else "strategy"
        raise RecipeError(f"trainer.{key}={out[key]} needs torch_xla, which is not installed")
    if out.get("accumulate_grad_batches", 1) != 1:
        raise RecipeError("trainer.accumulate_grad_batches: not supported; use a larger algo minibatch instead")
    return out
