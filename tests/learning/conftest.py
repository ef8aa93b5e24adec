"""Shared by the learning checks: train a recipe over seeds, evaluate like `lrl eval`, record, assert the bar.

With ``LRL_LEARNING_RESULTS=path.jsonl`` every check appends one JSON line (recipe, bar, frames, per-seed
returns), which ``benchmarks/learning.py`` turns into the results tables of README and docs/.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence

import pytest

from lrl.launch import RunResult, evaluate_run, train

SEEDS = range(5)


def final_return(recipe: str, seed: int, extra: Sequence[str] = ()) -> float:
    """Train ``recipe`` with ``seed`` to its budget; mean return of 20 deterministic evaluation episodes."""
    out = train(recipe, [f"seed={seed}", "eval.every=0", "eval.final=false", "checkpoint.every=0",
                         *extra], run_dir=f"runs/{recipe.replace('/', '-')}-{seed}")
    assert isinstance(out, RunResult)
    return float(evaluate_run(out.run_dir, episodes=20, seed=1000 + seed)["return_mean"])


Check = Callable[..., list[float]]


@pytest.fixture
def learning_check(request: pytest.FixtureRequest) -> Check:
    def check(recipe: str, bar: float, extra: Sequence[str] = (), seeds: Sequence[int] = SEEDS,
              need: int = 4, runner: Callable[[str, int, Sequence[str]], float] = final_return) -> list[float]:
        start = time.perf_counter()
        returns = [runner(recipe, s, extra) for s in seeds]
        path = os.environ.get("LRL_LEARNING_RESULTS")
        if path:
            from lrl.recipe import load

            budget = load(recipe, list(extra)).budget
            row = {"test": request.node.name, "recipe": recipe, "extra": list(extra), "bar": bar, "need": need,
                   "frames": budget.amount, "unit": budget.unit, "returns": returns,
                   "passed": sum(r >= bar for r in returns),
                   "seconds": time.perf_counter() - start}
            with open(path, "a") as f:
                f.write(json.dumps(row) + "\n")
        assert sum(r >= bar for r in returns) >= need, f"{recipe}: {returns} (bar {bar}, need {need} seeds)"
        return returns

    return check
