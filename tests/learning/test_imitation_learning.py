"""Learning checks for imitation: BC on demonstrations and DAgger with an expert that labels, on CartPole-v1.

The expert is the scripted controller of ``tests/experts.py`` (it balances for all 500 steps), named by import path
as a user's own expert would be, so the checks need no trained PPO run. The full BC-vs-DAgger comparison against the
number of expert labels, with lrl's own PPO and SAC experts, is ``benchmarks/imitation_table.py`` (docs/imitation.md).
"""

from __future__ import annotations

import pytest

from lrl.demos import record
from tests.learning.conftest import Check

EXPERT = "tests.experts:cartpole_pd"


@pytest.mark.slow
def test_bc_cartpole_clones_the_expert_from_1000_labels(learning_check: Check) -> None:
    record(EXPERT, 4, "cartpole/pd-expert-v0", env_id="CartPole-v1", seed=100)
    learning_check("bc/cartpole", 475, ["data.dataset=cartpole/pd-expert-v0", "data.max_samples=1000",
                                        "budget.steps=2000"])


@pytest.mark.slow
def test_dagger_cartpole_reaches_the_expert_from_250_labels(learning_check: Check) -> None:
    learning_check("dagger/cartpole", 475, [f"data.expert={EXPERT}", "data.label_budget=250",
                                            "data.labels_per_round=50", "data.batch_size=50",
                                            "data.steps_per_round=400", "budget.steps=2000"])
