"""Goal-conditioned BC with hindsight relabelling, iterated (GCSL), learning check (slow): the bar, budget and seeds are
stated here and in docs/gcbc.md. The success rate is that of 100 evaluation episodes of the final policy on
PointMaze_UMaze-v3 with continuing_task=False (the episode ends when the ball is within 0.45 of its goal)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from lrl.launch import RunResult, evaluate_run, train

pytestmark = pytest.mark.slow


def final_success(recipe: str, seed: int, extra: Sequence[str] = ()) -> float:
    """Train ``recipe`` with ``seed`` to its budget; success rate of 100 deterministic evaluation episodes."""
    pytest.importorskip("gymnasium_robotics")
    out = train(recipe, [f"seed={seed}", "eval.every=0", "eval.final=false", "checkpoint.every=0", *extra],
                run_dir=f"runs/{recipe.replace('/', '-')}-{seed}")
    assert isinstance(out, RunResult)
    return float(evaluate_run(out.run_dir, episodes=100, seed=1000 + seed)["success_rate"])


def test_gcbc_pointmaze_success_080_within_15_rounds(learning_check) -> None:  # type: ignore[no-untyped-def]
    learning_check("gcbc/pointmaze", 0.8, seeds=range(3), need=2, runner=final_success)
