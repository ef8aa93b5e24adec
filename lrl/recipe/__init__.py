"""Recipes: typed YAML that says everything about a run."""

from lrl.recipe.load import dump, load, shipped_recipes, validate
from lrl.recipe.schema import Recipe

__all__ = ["Recipe", "dump", "load", "shipped_recipes", "validate"]
