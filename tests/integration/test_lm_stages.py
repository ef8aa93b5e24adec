"""The LM stages through the launcher and the CLI on tiny models (seconds): lm-sft then lm-reward chained by the
model directory, lm-sft from any local save_pretrained directory, exact resume of both stages, bf16-mixed on CPU,
and one-line refusals (exit 2) for a bad model directory."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from lrl.cli import app
from lrl.launch import RunResult, resume, train
from tests.integration.test_algorithms import _load, _resumable_parts, assert_same

pytest.importorskip("transformers")

SFT = ["algo.n_layer=1", "algo.n_embd=16", "data.corpus_size=256", "data.batch_size=16", "budget.steps=20",
       "checkpoint.every=10", "tracking.log_every=5"]
RM = ["data.prompts=32", "data.test_prompts=8", "data.batch_size=8", "budget.steps=10", "checkpoint.every=5",
      "tracking.log_every=5", "algo.eval_every=5", "algo.n_layer=1", "algo.n_embd=16", "algo.n_head=2"]


def _train(recipe: str, overrides: list[str], run_dir: str) -> RunResult:
    out = train(recipe, overrides, run_dir=run_dir)
    assert isinstance(out, RunResult)
    return out


def _sft(run_dir: str = "runs/sft", extra: list[str] | None = None) -> Path:
    out = _train("lm-sft/reverse", [*SFT, *(extra or [])], run_dir)
    assert out.clock == 20 and out.clock_unit == "steps"
    return Path(run_dir) / "model"


def test_sft_then_reward_through_the_cli_write_loadable_model_dirs() -> None:
    from lrl.lm.models import load_causal_lm, load_reward_model

    cli = CliRunner()
    res = cli.invoke(app, ["train", "lm-sft/reverse", "--run-dir", "runs/sft", *SFT])
    assert res.exit_code == 0, res.output
    model, tok = load_causal_lm("runs/sft/model")
    ckpt = _load(Path("runs/sft/checkpoints/last.ckpt"))
    assert_same({k: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")},
                {f"model.{k}": v for k, v in model.state_dict().items() if f"model.{k}" in ckpt["state_dict"]})
    res = cli.invoke(app, ["train", "lm-reward/reverse", "--run-dir", "runs/rm", "data.policy=runs/sft/model", *RM,
                           "algo.init=policy"])
    assert res.exit_code == 0, res.output
    rm, rm_tok = load_reward_model("runs/rm/model")
    assert rm_tok.get_vocab() == tok.get_vocab() and rm.config.num_labels == 1
    assert rm.config.n_embd == model.config.n_embd == 16  # started from the SFT body
    import mlflow

    run_id = next(line.split()[-1] for line in res.output.splitlines() if "MLflow run" in line)
    hist = mlflow.MlflowClient().get_metric_history(run_id, "rm/accuracy")
    assert [m.step for m in hist] == [6, 10] and all(0 <= m.value <= 1 for m in hist)  # flushes: 1, 6, 10 (end)


def test_sft_trains_from_any_save_pretrained_directory() -> None:
    from lrl.lm.models import build_tiny_lm, load_causal_lm, train_tokenizer
    from lrl.lm.task import get_task

    torch.manual_seed(1)
    start = build_tiny_lm(train_tokenizer(get_task("reverse")), "mine", n_layer=1, n_embd=24, n_head=3)
    before = load_causal_lm(start)[0].state_dict()
    _sft(extra=[f"data.model={start}"])
    after = load_causal_lm("runs/sft/model")[0]
    assert after.config.n_embd == 24  # the directory's architecture, not the recipe's tiny one
    assert not torch.equal(after.state_dict()["transformer.wte.weight"], before["transformer.wte.weight"])


@pytest.mark.parametrize(("recipe", "extra", "budget"), [("lm-sft/reverse", SFT, 20), ("lm-reward/reverse", RM, 10)])
def test_resume_from_half_way_equals_straight_run(recipe: str, extra: list[str], budget: int) -> None:
    if recipe.startswith("lm-reward"):
        extra = [*extra, f"data.policy={_sft('runs/policy')}"]
    _train(recipe, extra, "runs/straight")
    mid = Path("runs/straight/checkpoints") / f"steps-{budget // 2:010d}.ckpt"
    half = Path("runs/resumed/checkpoints")
    half.mkdir(parents=True)
    shutil.copy("runs/straight/recipe.yaml", "runs/resumed/recipe.yaml")
    shutil.copy(mid, half)
    assert resume(half / mid.name).clock == budget
    assert_same(_resumable_parts(_load(Path("runs/straight/checkpoints/last.ckpt"))),
                _resumable_parts(_load(half / "last.ckpt")))
    straight = (Path("runs/straight/model") / "model.safetensors").read_bytes()
    assert (Path("runs/resumed/model") / "model.safetensors").read_bytes() == straight


def test_bf16_mixed_runs_on_cpu() -> None:
    policy = _sft(extra=["trainer.precision=bf16-mixed"])
    out = _train("lm-reward/reverse", [*RM, f"data.policy={policy}", "trainer.precision=bf16-mixed",
                                       "algo.loss=four_way", "algo.init=tiny", "algo.frozen_body=true"], "runs/rm")
    assert out.clock == 10


@pytest.mark.parametrize(("args", "message"), [
    (["lm-sft/reverse", "data.model=nowhere"], "data.model=nowhere: no such directory"),
    (["lm-reward/reverse", "data.policy=nowhere"], "data.policy=nowhere: no such directory; train the SFT stage"),
    (["lm-sft/reverse", "data.task=nope"], "unknown LM task 'nope'"),
])
def test_bad_model_directory_or_task_is_one_line_exit_2(args: list[str], message: str) -> None:
    res = CliRunner().invoke(app, ["train", *args, "--run-dir", "runs/bad"])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], res.output
    assert not Path("runs/bad").exists()
