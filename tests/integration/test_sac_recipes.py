"""The GPU recipe sac/halfcheetah validates and runs a few hundred frames on CPU (learning starts early here)."""

from __future__ import annotations

from lrl.launch import RunResult, train


def test_sac_halfcheetah_recipe_runs_a_few_hundred_frames() -> None:
    out = train("sac/halfcheetah", ["budget.frames=300", "data.learning_starts=200", "trainer.accelerator=cpu",
                                    "eval.every=0", "eval.final=false", "checkpoint.every=0"],
                run_dir="runs/sac-halfcheetah")
    assert isinstance(out, RunResult) and out.clock == 300
