"""Learning from preferences through the launcher (docs/rlhf.md): exact resume with the preference store, 2-process
DDP with identical ranks (policy and reward model), bf16, SAC on the learned reward, no acknowledged label lost to
kill -9, and bad input as one line. The SAC run is marked slow (`-m slow`); a person labelling
a waiting run in a real browser is tests/integration/test_label_page.py."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import torch

from lrl.launch import RunResult, resume, train
from lrl.rlhf.store import PreferenceStore, StoreError
from tests.conftest import ROOT, run_lrl
from tests.integration.test_algorithms import _load, _resumable_parts, assert_same

OFF = ["eval.every=0", "eval.final=false"]
# tiny: 256-frame rollouts, a reward-model update every 512 frames, 24 labels, 8 of them up front
TINY = [*OFF, "rlhf.labels=24", "rlhf.initial_fraction=0.34", "rlhf.update_every=512", "rlhf.epochs=2",
        "rlhf.pretrain_epochs=4", "rlhf.members=2", "rlhf.hidden=[16]", "algo.epochs=2"]


def _train(recipe: str, overrides: list[str], run_dir: str) -> RunResult:
    out = train(recipe, overrides, run_dir=run_dir)
    assert isinstance(out, RunResult)
    return out


def test_resume_after_kill_equals_straight_run() -> None:
    """Killed after the half-way checkpoint: the run directory keeps its checkpoint and its whole store (labels
    given after the checkpoint included). The resumed run re-asks the same query ids, finds their labels, and ends
    exactly where the straight run did: policy, reward model and its optimiser, schedule position, RNGs."""
    straight = _train("rlhf/cartpole", [*TINY, "budget.frames=2048", "checkpoint.every=1024"], "a/run")
    assert straight.clock == 2048
    ckdir = Path("b/run/checkpoints")  # the same run directory name elsewhere: its store still belongs to it
    ckdir.mkdir(parents=True)
    shutil.copy("a/run/recipe.yaml", "b/run/recipe.yaml")
    shutil.copy("a/run/checkpoints/frames-0000001024.ckpt", ckdir)
    shutil.copytree("a/run/preferences", "b/run/preferences")  # the store as the kill left it
    out = resume(ckdir / "frames-0000001024.ckpt")
    assert out.clock == 2048 and out.mlflow_run_id == straight.mlflow_run_id
    a, b = _load(Path("a/run/checkpoints/last.ckpt")), _load(ckdir / "last.ckpt")
    assert a["rlhf"]["asked"] == 24 and a["rlhf"]["updates"] == 4
    assert_same(_resumable_parts(a), _resumable_parts(b))
    store = PreferenceStore.open("b/run/preferences")
    assert store.counts() == {"queries": 24, "labels": 24, "pending": 0}  # nothing asked twice


def test_metrics_and_relabelled_training() -> None:
    out = _train("rlhf/cartpole", [*TINY, "budget.frames=1024", "tracking.log_every=256"], "runs/m")
    client = mlflow.MlflowClient()
    metrics = client.get_run(out.mlflow_run_id).data.metrics
    for key in ("rm/accuracy", "rm/val_loss", "rm/labels", "rm/true_corr", "train/true_return"):
        assert key in metrics, (key, sorted(metrics))
    labels = [m.value for m in client.get_metric_history(out.mlflow_run_id, "rm/labels")]
    assert labels == sorted(labels) and labels[-1] > labels[0]  # the schedule asks more as frames pass


def test_bf16_mixed_runs() -> None:
    _train("rlhf/cartpole", [*TINY, "budget.frames=1024", "trainer.precision=bf16-mixed"], "runs/bf16")
    ckpt = _load(Path("runs/bf16/checkpoints/last.ckpt"))
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
    assert all(torch.isfinite(v).all() for v in ckpt["rlhf"]["model"]["net"].values())


@pytest.mark.slow  # a subprocess run (~20-90 s on 2 shared cores)
def test_sac_learns_from_relabelled_replay_minibatches() -> None:
    out = _train("rlhf/inverted-pendulum-sac", [*OFF, "budget.frames=600", "data.learning_starts=200",
                                                "data.batch_size=32", "algo.hidden=[32]", "rlhf.labels=12",
                                                "rlhf.update_every=200", "rlhf.window=50", "rlhf.segment_length=20",
                                                "rlhf.epochs=2", "rlhf.pretrain_epochs=4", "checkpoint.every=0"],
                 "runs/sac")
    assert out.clock == 600
    ckpt = _load(Path("runs/sac/checkpoints/last.ckpt"))
    assert ckpt["rlhf"]["asked"] > 0 and ckpt["rlhf"]["updates"] >= 2


def test_ddp_two_cpu_processes_keep_identical_policy_and_reward_model(tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    proc = run_lrl("train", "rlhf/cartpole", *TINY, "budget.frames=2048", "trainer.accelerator=cpu",
                   "trainer.devices=2", "trainer.strategy=ddp", "--run-dir", str(run), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    digests = json.loads((run / "ddp_params.json").read_text())["sha256_per_rank"]
    assert len(digests) == 2 and digests[0] == digests[1]  # the digest covers the reward model (run_info)
    assert _load(run / "checkpoints" / "last.ckpt")["rlhf"]["asked"] == 24


WRITER = """
import sys
import numpy as np
from lrl.rlhf.store import PreferenceStore
store = PreferenceStore(sys.argv[1], "run", "CartPole-v1")
seg = {"obs0": np.zeros((25, 4)), "act0": np.zeros(25), "obs1": np.ones((25, 4)), "act1": np.ones(25)}
i = 0
while True:
    qid = f"q{i:06d}"
    store.add_query(qid, seg)
    if store.add_label(qid, ("left", "right", "equal", "skip")[i % 4], by="writer"):
        print(qid, flush=True)
    i += 1
"""


def test_kill_9_while_writing_labels_loses_no_acknowledged_label(tmp_path: Path) -> None:
    root = tmp_path / "preferences"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(root)], stdout=subprocess.PIPE, text=True,
                            cwd=ROOT)
    acked: list[str] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while len(acked) < 40 and time.monotonic() < deadline:
        acked.append(proc.stdout.readline().strip())
    proc.send_signal(signal.SIGKILL)
    rest = proc.stdout.read().split()  # acknowledged before the kill landed
    proc.wait()
    acked = [a for a in acked + rest if a]
    assert len(acked) >= 40
    labels = PreferenceStore.open(root).labels()
    missing = [q for q in acked if q not in labels]
    assert not missing, missing
    assert all(labels[q]["label"] == ("left", "right", "equal", "skip")[int(q[1:]) % 4] for q in acked)


def test_annotator_none_with_an_empty_store_is_one_line(tmp_path: Path) -> None:
    proc = run_lrl("train", "rlhf/cartpole", *TINY, "rlhf.annotator=none", "budget.frames=512", "--run-dir",
                   str(tmp_path / "none"), timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "rlhf.annotator=none" in proc.stderr and "Traceback" not in proc.stderr


def test_human_annotator_waits_then_stops_with_one_line_and_keeps_the_queries(tmp_path: Path) -> None:
    run = tmp_path / "human"
    proc = run_lrl("train", "rlhf/cartpole", *TINY, "rlhf.annotator=human", "rlhf.human.wait_seconds=2",
                   "rlhf.human.poll_seconds=0.2", "budget.frames=512", "--run-dir", str(run), timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"waiting for labels: run `lrl label {run}" in proc.stderr
    assert "no labels after 2 s" in proc.stderr and "Traceback" not in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if "no labels after" in line]) == 1
    store = PreferenceStore.open(run / "preferences")
    queries = store.queries()
    assert len(queries) == 8 and store.counts()["labels"] == 0
    for q in queries:  # every query shows two rendered clips
        assert all((store.root / c).read_bytes()[:3] == b"GIF" for c in q["clips"])
    for i, q in enumerate(queries):  # labelled later; the run started again in its directory uses them
        store.add_label(q["id"], ("left", "right", "equal")[i % 3], by="person")
    again = run_lrl("train", "rlhf/cartpole", *TINY, "rlhf.annotator=human", "rlhf.human.wait_seconds=2",
                    "budget.frames=512", "--run-dir", str(run), timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    assert _load(run / "checkpoints" / "last.ckpt")["rlhf"]["trained_labels"] >= 8


def test_env_that_cannot_render_is_refused_for_people(tmp_path: Path) -> None:
    proc = run_lrl("train", "rlhf/cartpole", *TINY, "rlhf.annotator=human",
                   "env.id=tests.custom_envs:BlindLineWorld-v0", "budget.frames=512", "--run-dir",
                   str(tmp_path / "norender"), timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "cannot render rgb_array" in proc.stderr or "renders no rgb_array" in proc.stderr


def test_store_of_another_run_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "other"
    PreferenceStore(run / "preferences", "someone-else", "CartPole-v1")
    with pytest.raises(StoreError, match="preference store of run 'someone-else'"):
        _train("rlhf/cartpole", [*TINY, "budget.frames=512"], str(run))
