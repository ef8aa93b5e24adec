"""Recipes: every shipped recipe validates; overrides; one clear error per kind of bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lrl.errors import RecipeError
from lrl.recipe import load, shipped_recipes, validate
from lrl.recipe.load import find_recipe


@pytest.mark.parametrize("name", shipped_recipes())
def test_shipped_recipes_validate_and_document_themselves(name: str) -> None:
    recipe = load(name)
    text = find_recipe(name).read_text()
    assert text.startswith("#") and f"lrl train {name}" in text  # a comment with the exact command line
    # dagger/cartpole: bc on the dagger source; rlhf/<task>: <algo>/<task> plus an rlhf section (docs/rlhf.md)
    assert (recipe.algo["name"] in name or recipe.data["name"] in name
            or (name.startswith("rlhf/") and recipe.rlhf is not None))


def test_resolved_recipe_has_all_defaults() -> None:
    recipe = load("ppo/cartpole")
    assert recipe.algo["target_kl"] is None and recipe.algo["gamma"] == 0.98
    assert recipe.algo["epochs"] == 20 and recipe.trainer["precision"] == "32-true"


def test_overrides() -> None:
    recipe = load("ppo/cartpole", ["seed=7", "algo.lr=3e-4", "budget.frames=5000", "trainer.devices=2",
                                   "env.kwargs.sutton_barto_reward=true", "algo.hidden=[32,32]"])
    assert recipe.seed == 7 and recipe.algo["lr"] == 3e-4 and recipe.budget.frames == 5000
    assert recipe.trainer["devices"] == 2 and recipe.env.kwargs == {"sutton_barto_reward": True}
    assert recipe.algo["hidden"] == [32, 32]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["algo.lrr=1"], "algo.lrr: unknown key"),
        (["algo.lr=fast"], "algo.lr:"),
        (["algo.name=nope"], "unknown algorithm 'nope'"),
        (["env.id=CartPol-v1"], "did you mean 'CartPole-v1'"),
        (["budget.frames=-5"], "budget.frames"),
        (["env.bogus=1"], "env.bogus: unknown key"),
        (["bogus=1"], "bogus: unknown key"),
        (["algo.epochs=two"], "algo.epochs:"),
        (["trainer.max_epochs=3"], "trainer.max_epochs: set by lrl itself"),
        (["trainer.devices=[0, x]"], "trainer.devices"),
        (["novalue"], "expected KEY=VALUE"),
    ],
)
def test_bad_input_is_one_clear_error(overrides: list[str], message: str) -> None:
    with pytest.raises(RecipeError) as err:
        load("ppo/cartpole", overrides)
    assert message in err.value.message and "\n" not in err.value.message
    assert err.value.exit_code == 2


def test_unknown_recipe_suggests(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="did you mean 'ppo/cartpole'"):
        load("ppo/cartpol")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load(str(bad))


def test_missing_section() -> None:
    data = yaml.safe_load(find_recipe("ppo/cartpole").read_text())
    del data["budget"]
    with pytest.raises(RecipeError, match="budget: required key is missing"):
        validate(data)
