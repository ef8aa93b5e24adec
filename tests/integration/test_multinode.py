"""Several machines: the same experiment whatever the topology.

``ppo/cartpole`` runs as 1 node x 2 processes (Lightning starts the second process) and as 2 nodes x 1 process
(two ``torchrun`` launches on 127.0.0.1, as on two machines sharing a filesystem), at the same time. Both exit 0,
the ranks of each run end with identical parameters, and the two runs end with the *same* parameters, bit for bit:
recipe numbers are global and env ``i`` overall is seeded ``seed + i``, so the topology changes nothing.
Only global rank 0 writes: one run directory, one MLflow run, nothing in the node-1 process's working directory.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import mlflow
import torch

from tests.conftest import run_lrl

RECIPE = ["ppo/cartpole", "eval.every=0", "eval.final=false", "budget.frames=2048", "trainer.accelerator=cpu",
          "trainer.strategy=ddp"]
TIMEOUT = 180  # a hung rendezvous fails the test instead of hanging it
LAUNCH_VARS = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
               "SLURM_PROCID", "SLURM_NTASKS", "LRL_RUN_DIR")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS}


def _lrl(args: list[str], cwd: Path, env: dict[str, str], prefix: list[str] | None = None) -> subprocess.Popen[str]:
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, *(prefix or []), "-m", "lrl.cli", "train", *args], cwd=cwd, env=env,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait(procs: dict[str, subprocess.Popen[str]]) -> dict[str, str]:
    """Every process's output; all are killed as soon as one fails or hangs, so that the others do not wait on a
    rendezvous that never completes."""
    outputs: dict[str, str] = {}
    try:
        for name, proc in procs.items():
            outputs[name] = proc.communicate(timeout=TIMEOUT)[0]
            if proc.returncode != 0:
                break
    except subprocess.TimeoutExpired:
        pass
    for name, proc in procs.items():
        if proc.poll() is None:
            proc.kill()
        if name not in outputs:
            outputs[name] = proc.communicate()[0] + "\n[killed]"
    for proc in procs.values():
        assert proc.returncode == 0, "\n".join(f"== {n}:\n{o[-2500:]}" for n, o in outputs.items())
    return outputs


def _digests(run: Path) -> list[str]:
    digests = json.loads((run / "ddp_params.json").read_text())["sha256_per_rank"]
    assert len(digests) == 2 and digests[0] == digests[1], digests
    return list(digests)


def test_two_nodes_end_equal_to_one_node_with_two_processes(tmp_path: Path) -> None:
    one_node, two_nodes = tmp_path / "one-node", tmp_path / "shared" / "two-nodes"
    # the two runs start at the same instant: the store's tables exist before (two processes creating a fresh
    # sqlite store at once trip over each other's migrations; the node-1 process never opens it)
    mlflow.MlflowClient().search_experiments()
    port = _free_port()
    torchrun = ["-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1", "--master-addr",
                "127.0.0.1", "--master-port", str(port)]
    multi = [*RECIPE, "trainer.num_nodes=2", "trainer.devices=1", "--run-dir", str(two_nodes)]
    procs = {
        "1 node x 2": _lrl([*RECIPE, "trainer.devices=2", "--run-dir", str(one_node)], tmp_path, _env()),
        **{f"node {r}": _lrl(multi, tmp_path / f"node{r}", _env(), [*torchrun, "--node-rank", str(r)])
           for r in (0, 1)},
    }
    outputs = _wait(procs)

    assert _digests(one_node) == _digests(two_nodes)  # the same experiment, bit for bit
    a, b = (torch.load(run / "checkpoints" / "last.ckpt", weights_only=False) for run in (one_node, two_nodes))
    assert a["lrl"]["clock"] == b["lrl"]["clock"] == 2048  # global frames
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])

    # only global rank 0 wrote: its report line, one MLflow run, nothing where node 1 was started
    assert "done: 2,048 frames" in outputs["node 0"] and "done:" not in outputs["node 1"]
    assert list((tmp_path / "node1").iterdir()) == []
    assert {p.name for p in two_nodes.iterdir()} >= {"recipe.yaml", "run.json", "checkpoints", "ddp_params.json"}
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list",
                              filter_string=f"tags.`lrl.run_dir` = '{two_nodes.resolve()}'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"


def test_every_rank_refuses_a_multinode_run_without_run_dir(tmp_path: Path) -> None:
    """Each process would pick its own timestamped directory: rank 0 and a node-1 process both say so and exit 2,
    before any rendezvous (a rank that went ahead alone would wait for the other forever)."""
    args = ["train", "ppo/cartpole", "trainer.num_nodes=2", "trainer.devices=1", "trainer.strategy=ddp"]
    for node_rank in ("0", "1"):
        proc = run_lrl(*args, env={"NODE_RANK": node_rank}, timeout=TIMEOUT)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert proc.stderr.strip().splitlines()[-1].startswith("error: a run on several nodes")
        assert "--run-dir" in proc.stderr
    assert not Path("runs").exists()
