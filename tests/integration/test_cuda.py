"""The algorithm contract on a CUDA device; skipped where there is none (CI has no GPU).

On a GPU machine: ``python -m pytest tests/integration/test_cuda.py``. For every case of the CPU contract test
(``test_algorithms.CASES``):

* it trains on ``trainer.accelerator=gpu`` in fp32 and in ``bf16-mixed``: the parameters live on the GPU and
  stay finite;
* a GPU run stopped half-way and resumed ends with the same counters and the same replay-buffer contents as the
  straight GPU run, and with parameters equal to within float rounding (CUDA kernels are not bit-reproducible
  across processes: cuBLAS picks algorithms per process, scatter/index backward passes use atomics);
* a GPU-trained run evaluates in a process that sees no GPU (``lrl eval`` with ``CUDA_VISIBLE_DEVICES=``): a
  checkpoint written on a GPU machine is usable on a laptop.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from lrl.launch import resume
from tests.conftest import run_lrl
from tests.integration.test_algorithms import CASES, HALF, OFF, _load, _resumable_parts, _sidecars, _train, assert_same

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
GPU = ["trainer.accelerator=gpu", "trainer.devices=1"]


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_trains_on_gpu(case: str, precision: str) -> None:
    recipe, extra = CASES[case]
    out = _train(recipe, [*extra, *OFF, *GPU, f"budget.frames={HALF}", f"trainer.precision={precision}"], "runs/gpu")
    assert out.clock >= HALF
    params = torch.load("runs/gpu/checkpoints/last.ckpt", weights_only=False)["state_dict"]  # where they were
    assert all(v.is_cuda for v in params.values()), {k: v.device for k, v in params.items()}
    assert all(torch.isfinite(v).all() for v in params.values() if v.is_floating_point())


def _close(a: Any, b: Any, path: str = "") -> None:
    """Equal structure and counters; float tensors equal to within rounding accumulated over a short run."""
    if isinstance(a, dict):
        assert set(a) == set(b), f"{path}: keys {set(a) ^ set(b)}"
        for k in a:
            if not (k == "env" and isinstance(a[k], bytes)):
                _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, torch.Tensor) and a.is_floating_point():
        assert a.shape == b.shape and a.dtype == b.dtype, path
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4, msg=lambda m: f"{path}: {m}")
    else:
        assert_same(a, b, path)


@pytest.mark.parametrize("case", sorted(CASES))
def test_resume_on_gpu(case: str) -> None:
    recipe, extra = CASES[case]
    overrides = [*extra, *OFF, *GPU, f"budget.frames={2 * HALF}", f"checkpoint.every={HALF}"]
    straight = _train(recipe, overrides, "runs/straight")
    mid = sorted(Path("runs/straight/checkpoints").glob("frames-*.ckpt"))[0]
    half = Path("runs/resumed/checkpoints")
    half.mkdir(parents=True)
    shutil.copy("runs/straight/recipe.yaml", "runs/resumed/recipe.yaml")
    shutil.copy(mid, half)
    for p in mid.parent.glob("buffer-*"):
        shutil.copy(p, half)
    assert resume(half / mid.name).clock == straight.clock
    a, b = _load(Path("runs/straight/checkpoints/last.ckpt")), _load(half / "last.ckpt")
    _close(_resumable_parts(a), _resumable_parts(b))
    _close(_sidecars(Path("runs/straight/checkpoints/last.ckpt")), _sidecars(half / "last.ckpt"))


@pytest.mark.parametrize("case", ["dqn-cartpole", "ppo-pendulum", "sac-pendulum"])
def test_gpu_run_evaluates_without_gpu(case: str, tmp_path: Path) -> None:
    recipe, extra = CASES[case]
    _train(recipe, [*extra, *OFF, *GPU, f"budget.frames={HALF}"], str(tmp_path / "run"))
    proc = run_lrl("eval", str(tmp_path / "run"), "--episodes", "2", "--json", env={"CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["episodes"] == 2
