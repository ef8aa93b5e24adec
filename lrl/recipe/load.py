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

from lrl.errors import RecipeError
from lrl.recipe.registry import algorithm_class, datamodule_class
from lrl.recipe.schema import Recipe, bind_section, check_trainer, format_validation_error

# Arguments the launcher supplies itself; a recipe may not set them.
INJECTED_ALGO = {"spec"}
INJECTED_DATA = {"env", "spec", "seed", "budget_frames"}


def recipes_dir() -> Path:
    """The shipped recipes: ``$LRL_RECIPES`` or the ``recipes/`` folder next to the package."""
    env = os.environ.get("LRL_RECIPES")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "recipes"


def shipped_recipes() -> list[str]:
    root = recipes_dir()
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.glob("*/*.yaml"))


def find_recipe(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise RecipeError(f"recipe file '{name_or_path}' not found")
        return path
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
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    data = copy.deepcopy(data)
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for i, k in enumerate(keys[:-1]):
            child = node.get(k)
            if child is None:
                child = node[k] = {}
            if not isinstance(child, dict):
                raise RecipeError(f"override '{text}': '{'.'.join(keys[: i + 1])}' is not a section")
            node = child
        node[keys[-1]] = value
    return data


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise RecipeError(f"recipe {path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise RecipeError(f"recipe {path}: expected a mapping of sections at the top level")
    return data


def check_env_id(env_id: str) -> None:
    import gymnasium

    if env_id not in gymnasium.registry:
        close = difflib.get_close_matches(env_id, list(gymnasium.registry), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise RecipeError(f"env.id: unknown gymnasium environment '{env_id}'{hint}")


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
        algo_args = {k: v for k, v in recipe.algo.items() if k != "name"}
        resolved_algo = {"name": algo["name"], **bind_section("algo", algo_args, algo_cls, INJECTED_ALGO)}
        data_name = recipe.data.get("name", algo_cls.default_datamodule)
        dm_cls = datamodule_class(str(data_name))
        data_args = {k: v for k, v in recipe.data.items() if k != "name"}
        resolved_data = {"name": data_name, **bind_section("data", data_args, dm_cls, INJECTED_DATA)}
        check_data = getattr(algo_cls, "check_data", None)  # an algorithm's constraints on its data section
        if check_data is not None:
            check_data(resolved_data)
        trainer = check_trainer(recipe.trainer)
        check_env_id(recipe.env.id)
    except RecipeError as err:
        raise RecipeError(f"{source}: {err.message}") from None
    return recipe.model_copy(update={"algo": resolved_algo, "data": resolved_data, "trainer": trainer})


def load(name_or_path: str, overrides: list[str] | None = None) -> Recipe:
    path = find_recipe(name_or_path)
    data = apply_overrides(read_yaml(path), overrides or [])
    return validate(data, source=f"recipe {name_or_path}")


def dump(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.to_dict(), sort_keys=False)
