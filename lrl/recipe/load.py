"""Recipe files: find (shipped name or path), read YAML, apply ``a.b=c`` overrides, validate, resolve.

A resolved recipe has every default filled in, including the algorithm's and the data module's constructor
defaults, so the ``recipe.yaml`` saved with a run says exactly what ran.
"""

from __future__ import annotations

import copy
import difflib
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from lrl.contract import Consumes, schedule_of
from lrl.errors import RecipeError
from lrl.recipe.registry import algorithm_class, datamodule_class
from lrl.recipe.schema import (
    EnvConfig,
    Recipe,
    algo_arguments,
    bind_section,
    bindable_params,
    check_trainer,
    format_validation_error,
)

# Arguments the launcher supplies itself; a recipe may not set them.
INJECTED_ALGO = {"spec"}
INJECTED_DATA = {"env", "spec", "seed", "budget", "clock_unit", "schedule"}
MOVED = {"data.epochs": "algo.epochs", "data.minibatch_size": "algo.minibatch_size"}  # Contract v2


def recipes_dir() -> Path:
    """The shipped recipes: ``$LRL_RECIPES`` or the ``recipes/`` folder next to the package."""
    env = os.environ.get("LRL_RECIPES")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "recipes"


SPACES = "spaces"  # recipes/spaces/: search spaces for `lrl sweep`, not recipes


def shipped_recipes() -> list[str]:
    root = recipes_dir()
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.glob("*/*.yaml") if p.parent.name != SPACES)


def find_recipe(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise RecipeError(f"recipe file '{name_or_path}' not found")
        return path
    if name_or_path.startswith(f"{SPACES}/"):
        raise RecipeError(f"'{name_or_path}' is a search space for `lrl sweep --space`, not a recipe")
    shipped = recipes_dir() / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    names = shipped_recipes()
    close = difflib.get_close_matches(name_or_path, names, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else "; run `lrl ls` to list them"
    raise RecipeError(f"unknown recipe '{name_or_path}'{hint}")


def parse_override(text: str) -> tuple[list[str], Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise RecipeError(f"override '{text}': expected KEY=VALUE, e.g. algo.lr=3e-4")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except (yaml.YAMLError, ValueError, TypeError):  # bad YAML, or a tag that cannot convert (!!float x)
        value = raw
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    data = copy.deepcopy(data)
    for text in overrides:
        keys, value = parse_override(text)
        set_key(data, keys, value, f"override '{text}'")
    return data


def set_key(data: dict[str, Any], keys: list[str], value: Any, what: str) -> None:
    """``data[k1][k2]...[kn] = value`` in place, creating missing sections; ``what`` names the setting in the error
    when a parent is a value rather than a section."""
    node = data
    for i, k in enumerate(keys[:-1]):
        child = node.get(k)
        if child is None:
            child = node[k] = {}
        if not isinstance(child, dict):
            raise RecipeError(f"{what}: '{'.'.join(keys[: i + 1])}' is not a section")
        node = child
    node[keys[-1]] = value


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, ValueError, TypeError) as err:
        raise RecipeError(f"recipe {path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise RecipeError(f"recipe {path}: expected a mapping of sections at the top level")
    return data


def check_env_id(env_id: str) -> None:
    """A gymnasium id, ``module:EnvId`` (gymnasium's own syntax: the module registers the env when imported), or a
    bare id of gymnasium-robotics (imported for it)."""
    import gymnasium

    from lrl.data.env import register_known

    module, sep, name = env_id.rpartition(":")
    try:
        register_known(env_id)
    except Exception as err:  # an import can fail any way; the recipe gets one line
        raise RecipeError(f"env.id={env_id}: module '{module if sep else 'gymnasium_robotics'}' cannot be imported "
                          f"({type(err).__name__}: {(str(err).splitlines() or [''])[0]})") from None
    if (name if sep else env_id) not in gymnasium.registry:
        close = difflib.get_close_matches(name if sep else env_id, list(gymnasium.registry), n=3)
        if not sep:
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise RecipeError(f"env.id: unknown gymnasium environment '{env_id}'{hint}")
        hint = f"; registered ids close to it: {', '.join(close)}" if close else ""
        raise RecipeError(f"env.id={env_id}: module '{module}' imports but registers no environment '{name}'{hint}")


def validate(data: dict[str, Any], source: str = "recipe") -> Recipe:
    """Turn a raw mapping into a resolved :class:`Recipe`, or raise one clear :class:`RecipeError`."""
    data = copy.deepcopy(data)
    algo = data.get("algo")
    if not isinstance(algo, dict) or "name" not in algo:
        raise RecipeError(f"{source}: algo.name: required key is missing")
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as err:
        raise RecipeError(f"{source}: {format_validation_error(err)}") from None
    try:
        algo_cls = algorithm_class(str(algo["name"]))
        consumes: Consumes = algo_cls.consumes
        algo_args = algo_arguments(recipe.algo)
        init_from = _check_init_from(recipe.algo.get("init_from"), str(algo["name"]), algo_cls)
        resolved_algo = {"name": algo["name"], **({"init_from": init_from} if init_from is not None else {}),
                         **bind_section("algo", algo_args, algo_cls, INJECTED_ALGO)}
        algo_cls.check_hparams(resolved_algo)
        data_name = str(recipe.data.get("name", consumes.sources[0]))
        if data_name not in consumes.sources:
            raise RecipeError(f"data.name={data_name}: algo.name={algo['name']} learns from "
                              f"{' or '.join(consumes.sources)} data; set data.name to one of them")
        dm_cls = datamodule_class(data_name)
        data_args = {k: v for k, v in recipe.data.items() if k != "name"}
        for old, new in MOVED.items():
            if old.split(".")[1] in data_args and old.split(".")[1] not in bindable_params(dm_cls, INJECTED_DATA):
                raise RecipeError(f"{old}: the update schedule belongs to the algorithm now; write it as {new}")
        resolved_data = {"name": data_name, **bind_section("data", data_args, dm_cls, INJECTED_DATA)}
        _check_source(recipe, consumes, dm_cls, resolved_data)
        trainer = check_trainer(recipe.trainer)
        dm_cls.check_args(resolved_data, recipe.env, schedule_of(resolved_algo, consumes), consumes,
                          world_size(trainer), recipe.budget.amount)
        env = recipe.env
        if env is not None:
            from lrl.data.wrappers import check as check_wrappers

            check_env_id(env.id)
            check_wrappers(env)
            env = _check_env_sections(env, resolved_algo, resolved_data)
    except RecipeError as err:
        raise RecipeError(f"{source}: {err.message}") from None
    return recipe.model_copy(update={"algo": resolved_algo, "data": resolved_data, "trainer": trainer, "env": env})


def _check_env_sections(env: EnvConfig, algo: dict[str, Any], data: dict[str, Any]) -> EnvConfig:
    """``env.shaping`` and ``env.curriculum`` against the algorithm and the source (docs/shaping.md); returns the env
    section with ``env.shaping.gamma`` resolved to ``algo.gamma``."""
    if env.shaping is None and env.curriculum is None:
        return env
    section = "env.shaping" if env.shaping is not None else "env.curriculum"
    if data.get("collector") == "torchrl":
        raise RecipeError(f"{section}: needs data.collector=lean (TorchRL's stock collector reports neither the "
                          "env's own reward nor stage changes); remove data.collector=torchrl")
    if env.shaping is None:
        return env
    from lrl.data.shaping import POTENTIALS, PREDICATES, resolve

    shaping = env.shaping
    for i, bonus in enumerate(shaping.bonuses):
        resolve(bonus.when, PREDICATES, f"env.shaping.bonuses[{i}].when")
    if shaping.potential is None:
        return env
    resolve(shaping.potential, POTENTIALS, "env.shaping.potential")
    gamma = algo.get("gamma")
    if not isinstance(gamma, int | float) or isinstance(gamma, bool):
        raise RecipeError(f"env.shaping.potential: algo.name={algo['name']} has no discount (algo.gamma); "
                          "potential-based shaping adds γΦ(s') − Φ(s) with the learner's own γ. Use "
                          "env.shaping.bonuses only, or an algorithm with a discount")
    if shaping.gamma is not None and shaping.gamma != float(gamma):
        raise RecipeError(f"env.shaping.gamma={shaping.gamma}: must be algo.gamma={gamma} (with another γ the "
                          "optimal policy can change); leave it out, it is filled in from algo.gamma")
    return env.model_copy(update={"shaping": shaping.model_copy(update={"gamma": float(gamma)})})


def _check_init_from(value: Any, name: str, algo_cls: Any) -> str | None:
    """``algo.init_from`` from the recipe alone: a path, into an algorithm with a stochastic MLP policy. The checkpoint
    itself (that it exists, its spec, its policy's layers, its observation normalisation) is checked before a run
    starts (``lrl.launch.init_from_state``): a shipped recipe may name a run that is made first."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or "\x00" in value:
        raise RecipeError(f"algo.init_from: must be a run directory or a .ckpt file (got {value!r})")
    if not algo_cls.has_policy_network():
        from lrl.recipe.registry import ALGORITHMS, algorithm_class

        able = ", ".join(n for n in sorted(ALGORITHMS) if algorithm_class(n).has_policy_network())
        raise RecipeError(f"algo.init_from: algo.name={name} has no stochastic MLP policy (categorical or diagonal "
                          f"Gaussian head) to start from another run's; algorithms that have one: {able}")
    return value


def _check_source(recipe: Recipe, consumes: Consumes, dm_cls: Any, data: dict[str, Any]) -> None:
    """What the algorithm consumes against what the source gives, from declarations alone (nothing is built)."""
    unit, name = recipe.budget.unit, data["name"]
    if unit not in dm_cls.clock_units:
        units = " or ".join(f"budget.{u}" for u in dm_cls.clock_units)
        raise RecipeError(f"budget.{unit}: data.name={name} counts {', '.join(dm_cls.clock_units)}; set {units}")
    if dm_cls.needs_env and recipe.env is None:
        raise RecipeError(f"env: required by data.name={name} (it collects experience in an environment)")
    missing = [k for k in consumes.keys if dm_cls.provides and k not in dm_cls.provides]
    if missing:
        raise RecipeError(f"data.name={name} does not provide {', '.join(missing)}, which algo.name="
                          f"{recipe.algo['name']} reads")
    streams = data.get("streams") or {}
    for stream in consumes.streams:
        if stream not in streams:
            raise RecipeError(f"data.streams.{stream}: required by algo.name={recipe.algo['name']} "
                              f"(add data.streams.{stream}.path=FILE)")


def world_size(trainer: dict[str, Any]) -> int | None:
    """The number of processes a resolved ``trainer:`` section asks for, when it fixes one (else None)."""
    devices, nodes = trainer.get("devices", 1), trainer.get("num_nodes", 1)
    if isinstance(devices, list):
        count = len(devices)
    elif isinstance(devices, int) and devices > 0:
        count = devices
    elif isinstance(devices, str) and devices.strip().isdigit() and int(devices) > 0:
        count = int(devices)
    else:
        return None  # "auto" / -1: known when the Trainer is built
    return count * nodes if isinstance(nodes, int) and nodes > 0 else None


def load(name_or_path: str, overrides: list[str] | None = None) -> Recipe:
    path = find_recipe(name_or_path)
    data = apply_overrides(read_yaml(path), overrides or [])
    return validate(data, source=f"recipe {name_or_path}")


def dump(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.to_dict(), sort_keys=False)
