"""Atari learning check (slow, not run by the helper that wrote it): PPO on Pong at a CPU budget.

ppo/pong is RL-Zoo's Atari PPO with a 10M-frame (GPU-sized) budget; here it is cut to 1M frames (agent steps, 4M
emulator frames) on the CPU. Bar: a mean evaluation score (20 full games, deterministic policy) of at least -18,
2.7 points above the random policy's -20.7 (Mnih et al. 2015, Extended Data Table 2), on 1 seed. PPO with the
Nature CNN ran at ~115 frames per CPU-second on one thread (docs/atari.md), so this is ~2.5 hours of one core per
seed, plus 20 evaluation games.
"""

from __future__ import annotations

import pytest

pytest.importorskip("ale_py")
pytestmark = pytest.mark.slow


def test_ppo_pong_beats_random_by_2_7_points_within_1m_frames(learning_check) -> None:  # type: ignore[no-untyped-def]
    learning_check("ppo/pong", -18.0, ["budget.frames=1000000", "trainer.accelerator=cpu"], seeds=[0], need=1)
