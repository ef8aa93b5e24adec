"""Does a refactor change what is learned? Train every shipped recipe briefly on this tree and on a git revision,
and compare the final checkpoints bit for bit.

Each recipe runs ``--frames`` frames (eval and periodic checkpoints off, one torch thread) through the real CLI
of each tree, in a fresh process, with the same seed; the model's ``state_dict`` and the optimiser states of both
``last.ckpt`` files must be equal tensor for tensor. Equal parameters after the same data mean equal learning
curves, so the measured learning checks (README, docs/) carry over to the refactored code.

    python benchmarks/same_results.py --against main            # every recipe, 4096 frames
    python benchmarks/same_results.py --against 9bb3a88 -k ppo  # recipes whose name contains "ppo"
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["eval.final=false", "seed=3"]


def _recipes(tree: Path) -> list[str]:
    return sorted(str(p.relative_to(tree / "recipes").with_suffix("")) for p in (tree / "recipes").glob("*/*.yaml"))


def _train(tree: Path, recipe: str, frames: int, out: Path) -> Path:
    env = {**os.environ, "PYTHONPATH": str(tree), "LRL_NUM_THREADS": "1", "LRL_RECIPES": str(tree / "recipes"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{out.parent}/mlflow.db"}
    # both spellings of the periodic settings: the old tree reads *_frames, the new one every (aliases)
    keys = ["eval.every_frames=0", "checkpoint.every_frames=0"] if "every_frames" in (
        tree / "recipes" / f"{recipe}.yaml").read_text() else ["eval.every=0", "checkpoint.every=0"]
    cmd = [sys.executable, "-m", "lrl.cli", "train", recipe, f"budget.frames={frames}", *QUIET, *keys,
           "--run-dir", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=out.parent, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"{tree.name}: {recipe}: {proc.stderr.strip().splitlines()[-1:]}")
    return out / "checkpoints" / "last.ckpt"


def _tensors(ckpt: Path) -> dict[str, torch.Tensor]:
    state: dict[str, Any] = torch.load(ckpt, map_location="cpu", weights_only=False)
    out = {f"model.{k}": v for k, v in state["state_dict"].items()}
    for i, opt in enumerate(state.get("optimizer_states", [])):
        for pid, s in opt["state"].items():
            for k, v in s.items():
                if isinstance(v, torch.Tensor):
                    out[f"optim{i}.{pid}.{k}"] = v
    return out


def compare(a: Path, b: Path) -> str:
    ta, tb = _tensors(a), _tensors(b)
    if ta.keys() != tb.keys():
        return f"different keys: {sorted(ta.keys() ^ tb.keys())[:4]}"
    diff = [k for k in ta if not torch.equal(ta[k], tb[k])]
    return "identical" if not diff else f"{len(diff)}/{len(ta)} tensors differ, e.g. {diff[0]}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", required=True, help="git revision to compare with")
    parser.add_argument("--frames", type=int, default=4096)
    parser.add_argument("-k", default="", help="only recipes whose name contains this")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lrl-same-") as tmp:
        old = Path(tmp) / "old"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old), args.against],
                       check=True, capture_output=True)
        try:
            names = [r for r in _recipes(ROOT) if args.k in r and r in _recipes(old)]
            bad = 0
            for name in names:
                runs = Path(tmp) / name.replace("/", "-")
                runs.mkdir(parents=True)
                try:
                    verdict = compare(_train(ROOT, name, args.frames, runs / "new"),
                                      _train(old, name, args.frames, runs / "old"))
                except RuntimeError as err:
                    verdict = f"failed: {err}"
                bad += verdict != "identical"
                print(f"| `{name}` | {args.frames:,} | {verdict} |", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], capture_output=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
