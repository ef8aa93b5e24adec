"""``benchmarks/update_floor.py`` times variants of one update that must do the same arithmetic: a variant that
computed something else would make the floor it reports meaningless. Eager variants only (compiling is slow)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch


@pytest.fixture(scope="module")
def floor() -> ModuleType:
    bench = str(Path(__file__).resolve().parents[2] / "benchmarks")
    sys.path.insert(0, bench)  # the script imports its neighbours (flops, reference/) as a script would
    try:
        import update_floor
    finally:
        sys.path.remove(bench)
    return update_floor


@pytest.mark.parametrize("algo", ["dqn", "ppo"])
def test_fused_adam_takes_the_same_steps_as_foreach(floor: ModuleType, algo: str) -> None:
    make = floor.dqn_update if algo == "dqn" else floor.ppo_update
    ref, fused = make(fused=False, compiled=False), make(fused=True, compiled=False)
    torch.testing.assert_close(fused.loss(), ref.loss(), rtol=0, atol=0)
    first = ref.loss().item()
    for _ in range(5):
        ref.step()
        fused.step()
    torch.testing.assert_close(fused.loss(), ref.loss(), rtol=1e-5, atol=1e-6)
    assert ref.loss().item() < first  # the update does descend on its fixed data


def test_stacked_actor_critic_is_the_two_networks(floor: ModuleType) -> None:
    """Actor and critic as one network of stacked weights (value head padded with zeros): the same loss before
    and after Adam steps, so the padded columns stay zero and take no part."""
    two, stacked = floor.ppo_update(fused=True, compiled=False), floor.ppo_update(fused=True, compiled=False,
                                                                                  stacked=True)
    torch.testing.assert_close(stacked.loss(), two.loss(), rtol=1e-6, atol=1e-7)
    for _ in range(5):
        two.step()
        stacked.step()
    torch.testing.assert_close(stacked.loss(), two.loss(), rtol=1e-5, atol=1e-6)
