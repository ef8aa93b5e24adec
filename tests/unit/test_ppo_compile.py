"""PPO with ``compile: true``: the compiled loss gives the eager loss's weights, and ε's linear decay (a new value
every rollout) does not recompile it (ε goes in as a tensor)."""

from __future__ import annotations

import torch

from lrl.algos.ppo.module import PPO
from lrl.contract import Batch
from tests.unit.test_wiring import DISCRETE, attach, rollout


def _two_rollouts(compile: bool) -> list[torch.Tensor]:
    torch.manual_seed(0)
    m = PPO(DISCRETE, hidden=[8], minibatch_size=None, clip_schedule="linear", max_grad_norm=None,
            compile=compile)
    attach(m)
    for progress in (1.0, 0.5):  # two rollouts, two clip ranges
        td = m.process_rollout(rollout(DISCRETE))
        with torch.no_grad():
            td["sample_log_prob"] = m.net.head.log_prob(m.net.policy_params(td["observation"]), td["action"])
        m.training_step(iter([(Batch(td.reshape(-1), 1000, progress, 0, True), 0, 0)]))
    return [p.detach().clone() for p in m.parameters()]


def test_compiled_loss_matches_eager_without_recompiling() -> None:
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    compiled = _two_rollouts(compile=True)
    graphs = counters["stats"]["unique_graphs"]
    eager = _two_rollouts(compile=False)
    for a, b in zip(compiled, eager, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert graphs == 1, f"the loss was compiled {graphs} times for two clip ranges"
