#!/usr/bin/env bash
# The whole lrl-vs-TRL LM comparison (issue #14): one SFT model, then per seed the export, lrl's and TRL's reward
# model on the same preference data, and GRPO / PPO from the same SFT model with lrl's reward model of that seed.
# The order of the two frameworks alternates between seeds (a noisy shared machine drifts).
#   PYTHONPATH=/path/to/lrl bash benchmarks/lm_trl_bench.sh /tmp/lmbench 0 1 2
# Environment: PYTHON (lrl's, default python), TRL_PY (default /work/venvs/trl/bin/python), TRL_PPO_PY (TRL 1.12,
# default /work/venvs/trl-ppo/bin/python; set it to "" to skip PPO). Results: benchmarks/results/lm_{lrl,trl}.jsonl.
# LM_COMPARE_ARGS / LM_TRL_ARGS: extra arguments of every lm_compare.py / lm_trl.py call, e.g. a smoke test:
#   LM_COMPARE_ARGS="--rl-prompts 128 --reward-steps 20 --sft-override budget.steps=100 --results /tmp/s/lm_lrl.jsonl" \
#   LM_TRL_ARGS="--results /tmp/s/lm_trl.jsonl" bash benchmarks/lm_trl_bench.sh /tmp/s 0
set -euo pipefail
ROOT=${1:?usage: lm_trl_bench.sh OUT_ROOT [SEEDS...]}
shift
SEEDS=${*:-0 1 2}
PY=${PYTHON:-python}
TRL=${TRL_PY:-/work/venvs/trl/bin/python}
TRLPPO=${TRL_PPO_PY-/work/venvs/trl-ppo/bin/python}
B=$(cd "$(dirname "$0")" && pwd)
export OMP_NUM_THREADS=1 LRL_NUM_THREADS=1
read -r -a CMP_ARGS <<< "${LM_COMPARE_ARGS:-}"
read -r -a TRL_ARGS <<< "${LM_TRL_ARGS:-}"
run() { echo "+ $*" >&2; "$@"; }
lrlc() { run "$PY" "$B/lm_compare.py" "$@" "${CMP_ARGS[@]}"; }
trl() { local py=$1; shift; run "$py" "$B/lm_trl.py" "$@" "${TRL_ARGS[@]}"; }

mkdir -p "$ROOT"
[ -d "$ROOT/base/sft" ] || lrlc sft --out "$ROOT/base" --seed 0
first=1
for s in $SEEDS; do
  OUT=$ROOT/seed$s
  mkdir -p "$OUT"
  rm -rf "$OUT/sft" && cp -r "$ROOT/base/sft" "$OUT/sft"
  lrlc export --out "$OUT" --seed "$s"
  [ $first = 1 ] && lrlc sft-eval --out "$OUT" --seed "$s"
  if [ $((s % 2)) = 0 ]; then
    lrlc lrl-reward --out "$OUT" --seed "$s"
    trl "$TRL" reward --out "$OUT"
    lrlc lrl-grpo --out "$OUT" --seed "$s"
    trl "$TRL" grpo --out "$OUT"
    lrlc lrl-ppo --out "$OUT" --seed "$s"
    [ -z "$TRLPPO" ] || trl "$TRLPPO" ppo --out "$OUT"
  else
    trl "$TRL" reward --out "$OUT"
    lrlc lrl-reward --out "$OUT" --seed "$s"
    trl "$TRL" grpo --out "$OUT"
    lrlc lrl-grpo --out "$OUT" --seed "$s"
    [ -z "$TRLPPO" ] || trl "$TRLPPO" ppo --out "$OUT"
    lrlc lrl-ppo --out "$OUT" --seed "$s"
  fi
  first=0
done
lrlc table
