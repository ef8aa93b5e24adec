"""Typed recipe sections (DESIGN.md §2) and the binding of `algo:` / `data:` / `trainer:` to signatures.

The fixed sections are pydantic models that forbid unknown keys. The `algo:` and `data:` sections are bound to
the keyword-only constructor arguments of the registered classes, with each value checked against the
argument's annotation, so a recipe can never carry a hyperparameter that the code silently ignores.
"""

from __future__ import annotations

import inspect
import re
import typing
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from lrl.contract import CLOCK_UNITS, ClockUnit
from lrl.errors import RecipeError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

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


class EnvConfig(_Section):
    """Where experience comes from: a gymnasium id, vectorised in-process by default (DESIGN.md §4)."""

    id: str
    num_envs: int = Field(1, ge=1, description="global number of envs, split evenly across ranks")
    vectorization: Literal["sync", "async"] = "sync"
    normalize_obs: bool = False
    normalize_reward: bool = False
    clip_obs: float = Field(10.0, gt=0)
    clip_reward: float = Field(10.0, gt=0)
    max_episode_steps: int | None = Field(None, ge=1)
    kwargs: dict[str, Any] = Field(default_factory=dict)


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


class CheckpointConfig(_Section):
    every: int = _every("every", 0, "checkpoint every N clock units (0: only last.ckpt)")


class TrackingConfig(_Section):
    experiment: str = "lrl"
    run_name: str | None = None
    tracking_uri: str | None = None
    log_every: int = _every("log_every", 2048, "log metrics every N clock units")


# Trainer arguments that lrl sets itself: frames are the clock and lrl owns checkpoints and logging.
RESERVED_TRAINER_KEYS = {
    "callbacks", "logger", "max_epochs", "min_epochs", "max_steps", "min_steps", "max_time",
    "limit_train_batches", "enable_checkpointing", "default_root_dir", "use_distributed_sampler",
    "num_sanity_val_steps", "val_check_interval", "check_val_every_n_epoch", "limit_val_batches",
    "reload_dataloaders_every_n_epochs", "gradient_clip_val", "gradient_clip_algorithm",
}
TRAINER_DEFAULTS: dict[str, Any] = {"accelerator": "auto", "devices": 1, "strategy": "auto", "precision": "32-true"}


class Recipe(_Section):
    name: str
    seed: int = 0
    algo: dict[str, Any]
    env: EnvConfig | None = None  # none for sources without an environment (an offline dataset)
    data: dict[str, Any] = Field(default_factory=dict)
    budget: BudgetConfig
    trainer: dict[str, Any] = Field(default_factory=dict)
    eval: EvalConfig = EvalConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    tracking: TrackingConfig = TrackingConfig()

    def to_dict(self) -> dict[str, Any]:
        out = self.model_dump(mode="json")
        out["budget"] = {k: v for k, v in out["budget"].items() if v is not None}
        if out["env"] is None:
            del out["env"]
        return out


def format_validation_error(err: ValidationError, prefix: str = "") -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in (prefix, *first["loc"]) if p != "")
    if first["type"] == "extra_forbidden":
        return f"{loc}: unknown key"
    if first["type"] == "missing":
        return f"{loc}: required key is missing"
    return f"{loc}: {first['msg'].removeprefix('Value error, ')} (got {first.get('input')!r})"


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
            try:
                out[name] = TypeAdapter(hints.get(name, Any)).validate_python(values[name])
            except ValidationError as err:
                msg = err.errors()[0]["msg"]
                raise RecipeError(f"{section}.{name}: {msg} (got {values[name]!r})") from None
        elif p.default is inspect.Parameter.empty:
            raise RecipeError(f"{section}.{name}: required key is missing")
        else:
            out[name] = p.default
    return out


def check_trainer(values: dict[str, Any]) -> dict[str, Any]:
    import lightning

    allowed = set(inspect.signature(lightning.Trainer.__init__).parameters) - {"self"}
    for key in values:
        if key in RESERVED_TRAINER_KEYS:
            raise RecipeError(f"trainer.{key}: set by lrl itself (frames are the clock); remove it from the recipe")
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
                raise RecipeError(f"trainer.{key}: expected {typ}, got {out[key]!r}") from None
    devices = out.get("devices")
    if isinstance(devices, str) and not re.fullmatch(r"auto|-1|\d+|\d+(,\d+)*,?", devices.strip()):
        raise RecipeError(f"trainer.devices: expected a count, a list of indices, 'auto' or -1, got {devices!r}")
    if out.get("accumulate_grad_batches", 1) != 1:
        raise RecipeError("trainer.accumulate_grad_batches: not supported; use a larger algo minibatch instead")
    return out
