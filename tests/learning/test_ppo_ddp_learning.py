"""2-process CPU DDP reaches the single-process bar on CartPole-v1, ranks identical (slow)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from lrl.launch import evaluate_run
from tests.conftest import run_lrl

pytestmark = pytest.mark.slow


def _ddp_return(recipe: str, seed: int, extra: Sequence[str]) -> float:
    run = Path(f"runs/ddp-{seed}")
    proc = run_lrl("train", recipe, "trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp",
                   f"seed={seed}", "eval.every=0", "eval.final=false", *extra, "--run-dir", str(run),
                   timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    digests = json.loads((run / "ddp_params.json").read_text())["sha256_per_rank"]
    assert len(digests) == 2 and digests[0] == digests[1]
    return float(evaluate_run(run, episodes=20, seed=1000 + seed)["return_mean"])


def test_ppo_cartpole_ddp_two_processes_475(learning_check) -> None:  # type: ignore[no-untyped-def]
    learning_check("ppo/cartpole", 475, runner=_ddp_return)
