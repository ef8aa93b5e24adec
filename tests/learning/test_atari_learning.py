"""Atari learning check (slow): PPO on Pong at a CPU budget.

ppo/pong is RL-Zoo's Atari PPO with a 10M-frame (GPU-sized) budget; here it is cut to 1M frames (agent steps, 4M
emulator frames) on the CPU. Bar: a mean score over 20 full games of at least -18, 2.7 points above the random
policy's -20.7 (Mnih et al. 2015, Extended Data Table 2), on 1 seed. PPO with the Nature CNN ran at ~115 frames per
CPU-second on one thread (docs/atari.md), so this is ~2.5 hours of one core per seed, plus 20 evaluation games.

Protocol: the evaluation games sample their actions from the policy, as RL Zoo evaluates its Atari agents (its
`enjoy` script is deterministic by default except for Atari games). The first version of this check used the arg-max
policy; at 1M frames that policy scored 0 points in 18 of 20 games (seed 0: -20.2 arg-max, -17.3 sampled, see
docs/atari.md "Pong on a CPU budget"). The protocol was changed after seeing seed 0, so the check runs on seed 1,
which had not been run when this was written; the bar is unchanged. Both scores are recorded.
Measured 2026-12-06 (one thread, 1h39): seed 1 scored -10.3 +- 2.7 sampled, -9.5 arg-max: passes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import pytest

pytest.importorskip("ale_py")
pytestmark = pytest.mark.slow


def sampled_return(recipe: str, seed: int, extra: Sequence[str] = ()) -> float:
    """Train to the budget; mean unclipped score of 20 games with sampled actions (arg-max recorded beside it)."""
    from lrl.launch import RunResult, evaluate_run, train

    out = train(recipe, [f"seed={seed}", "eval.every=0", "eval.final=false", "checkpoint.every=0", *extra],
                run_dir=f"runs/{recipe.replace('/', '-')}-{seed}")
    assert isinstance(out, RunResult)
    sampled = evaluate_run(out.run_dir, episodes=20, seed=1000 + seed, deterministic=False)
    argmax = evaluate_run(out.run_dir, episodes=20, seed=1000 + seed, deterministic=True)
    path = os.environ.get("LRL_LEARNING_RESULTS")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"recipe": recipe, "seed": seed, "extra": list(extra), "sampled": sampled,
                                "deterministic": argmax}, default=str) + "\n")
    return float(sampled["return_mean"])


def test_ppo_pong_beats_random_by_2_7_points_within_1m_frames(learning_check) -> None:  # type: ignore[no-untyped-def]
    learning_check("ppo/pong", -18.0, ["budget.frames=1000000", "trainer.accelerator=cpu"], seeds=[1], need=1,
                   runner=sampled_return)
