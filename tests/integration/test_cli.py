"""The command line: listing, showing, copying, dry runs, and one clear line + non-zero exit per bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from lrl.cli import app
from tests.conftest import run_lrl

runner = CliRunner()


def _error_line(result: object) -> str:
    out = result.stderr if hasattr(result, "stderr") else ""  # type: ignore[attr-defined]
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1, out
    assert lines[0].startswith("error: ") and "Traceback" not in out
    return lines[0]


def test_ls_show_cp_validate(tmp_path: Path) -> None:
    out = runner.invoke(app, ["ls"])
    assert out.exit_code == 0 and "ppo/cartpole" in out.stdout and "ppo" in out.stdout
    out = runner.invoke(app, ["show", "ppo/cartpole", "algo.lr=0.5"])
    assert out.exit_code == 0 and "lr: 0.5" in out.stdout and "target_kl: null" in out.stdout
    out = runner.invoke(app, ["cp", "ppo/cartpole", str(tmp_path)])
    assert out.exit_code == 0 and (tmp_path / "cartpole.yaml").is_file()
    again = runner.invoke(app, ["cp", "ppo/cartpole", str(tmp_path)])
    assert again.exit_code == 1 and "--force" in again.stderr
    out = runner.invoke(app, ["validate"])
    assert out.exit_code == 0 and "ok    ppo/cartpole" in out.stdout
    out = runner.invoke(app, ["train", str(tmp_path / "cartpole.yaml"), "--dry-run", "budget.frames=100"])
    assert out.exit_code == 0 and "frames: 100" in out.stdout and not Path("runs").exists()


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["train", "ppo/nope"], 2, "unknown recipe 'ppo/nope'"),
        (["train", "ppo/cartpole", "algo.lrr=1"], 2, "algo.lrr: unknown key"),
        (["train", "ppo/cartpole", "algo.lr=abc"], 2, "algo.lr:"),
        (["train", "ppo/cartpole", "env.id=NoSuchEnv-v0"], 2, "unknown gymnasium environment"),
        (["train", "ppo/cartpole", "trainer.devices=lots"], 2, "trainer.devices"),
        (["show", "ppo/cartpole", "budget.frames=0"], 2, "budget.frames"),
        (["eval", "does/not/exist"], 1, "not found"),
        (["resume", "does/not/exist"], 1, "not found"),
        (["train", "dqn/cartpole", "env.id=Pendulum-v1"], 2,
         "needs discrete actions, but Pendulum-v1 has continuous actions"),
        (["train", "sarsa/cartpole", "env.id=Pendulum-v1"], 2, "needs discrete actions"),
        (["train", "sac/pendulum", "env.id=CartPole-v1"], 2,
         "needs continuous actions, but CartPole-v1 has discrete actions"),
        (["train", "td3/pendulum", "env.id=CartPole-v1"], 2, "needs continuous actions"),
        (["train", "ddpg/pendulum", "env.id=CartPole-v1"], 2, "needs continuous actions"),
    ],
)
def test_bad_input(args: list[str], code: int, fragment: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == code, result.output
    assert fragment in _error_line(result)
    assert not Path("runs").exists()  # nothing half-written


def test_corrupt_and_foreign_checkpoints(tmp_path: Path) -> None:
    corrupt = tmp_path / "run" / "checkpoints"
    corrupt.mkdir(parents=True)
    (corrupt / "last.ckpt").write_bytes(b"\x00not a checkpoint")
    for cmd in ("eval", "resume"):
        result = runner.invoke(app, [cmd, str(tmp_path / "run")])
        assert result.exit_code == 1 and "unreadable or corrupt" in _error_line(result)
    import torch

    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    result = runner.invoke(app, ["eval", str(foreign)])
    assert result.exit_code == 1 and "not an lrl checkpoint" in _error_line(result)
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["resume", str(empty)])
    assert result.exit_code == 1 and "no checkpoint" in _error_line(result)


def test_unreachable_tracking_server_in_a_real_process() -> None:
    proc = run_lrl("train", "ppo/cartpole", "--tracking-uri", "http://127.0.0.1:9", timeout=120)
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "MLflow tracking server http://127.0.0.1:9 is unreachable" in lines[0], proc.stderr
    assert not Path("runs").exists()
