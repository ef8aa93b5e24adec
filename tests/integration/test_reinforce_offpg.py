"""reinforce and offpg refuse data they cannot use, in one clear line, before anything is left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from lrl.errors import RecipeError
from lrl.launch import train


@pytest.mark.parametrize(
    ("recipe", "overrides", "message"),
    [
        ("reinforce/cartpole", ["data.complete_episodes=false"], "set data.complete_episodes=true"),
        ("offpg/cartpole", ["data.minibatch_size=64"], "set data.minibatch_size=null"),
        ("reinforce/cartpole", ["algo.policy_epochs=100"], "exceeds data.epochs=80"),
        ("offpg/cartpole", ["data.collector=torchrl"], "needs data.collector=lean"),
    ],
)
def test_unusable_data_is_one_clear_error(recipe: str, overrides: list[str], message: str) -> None:
    with pytest.raises(RecipeError) as err:
        train(recipe, [*overrides, "budget.frames=512", "eval.final=false"], run_dir="runs/bad")
    assert message in err.value.message and "\n" not in err.value.message
    assert not Path("runs/bad").exists()
