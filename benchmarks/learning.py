"""Run the slow learning checks and print their results as a table (the numbers in README and docs/).

Each check in ``tests/learning`` trains a recipe on several seeds through the real launcher, evaluates the
deterministic policy on 20 separate episodes (``lrl eval``) and asserts a return bar on at least 4 of 5 seeds.
This script runs them (all, or those matching ``-k``), collects what each check recorded and prints one
Markdown row per check: recipe, frame budget, bar, per-seed returns, seeds passing, wall-clock.

    python benchmarks/learning.py                      # every learning check (long: tens of minutes)
    python benchmarks/learning.py -k ppo               # a pytest -k selection
    python benchmarks/learning.py --table results.jsonl   # print the table of an earlier run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def table(rows: list[dict]) -> str:
    lines = ["| check | recipe (overrides) | frames | bar | returns per seed | passed | time |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        recipe = r["recipe"] + (f" `{' '.join(r['extra'])}`" if r["extra"] else "")
        rets = ", ".join(f"{x:.0f}" for x in r["returns"])
        ok = "yes" if r["passed"] >= r["need"] else "**no**"
        lines.append(f"| {r['test']} | {recipe} | {r['frames']:,} | ≥ {r['bar']:g} | {rets} | "
                     f"{r['passed']}/{len(r['returns'])} ({ok}) | {r['seconds'] / 60:.1f} min |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-k", default=None, help="pytest -k expression selecting checks")
    parser.add_argument("--table", type=Path, default=None, help="only print the table of this JSONL file")
    parser.add_argument("--out", type=Path, default=None, help="keep the JSONL results here")
    args = parser.parse_args()
    if args.table:
        print(table([json.loads(line) for line in args.table.read_text().splitlines() if line.strip()]))
        return 0
    out = args.out or Path(tempfile.mkdtemp()) / "learning.jsonl"
    cmd = [sys.executable, "-m", "pytest", "-m", "slow", "-q", str(ROOT / "tests" / "learning"),
           "-p", "no:cacheprovider", "-n", "0"]  # one check at a time: each runs its own seeds side by side
    if args.k:
        cmd += ["-k", args.k]
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "LRL_LEARNING_RESULTS": str(out)})
    if out.exists():
        print(table([json.loads(line) for line in out.read_text().splitlines() if line.strip()]))
        print(f"\n(raw results: {out})")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
