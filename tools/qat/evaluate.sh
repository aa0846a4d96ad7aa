#!/usr/bin/env bash
# Quality and size of the trained variants, as quantserve measures them.
#   tools/qat/evaluate.sh sentiment ternary-kd int4-kd bcq2-kd
#   tools/qat/evaluate.sh en-pt int4-kd ternary-kd mixed-kd
# Prints `quantserve eval` (test accuracy / BLEU+chrF on the 500-verse sample, default search)
# and the in-memory weight bytes that `quantserve bench` reports, and writes the eval JSON
# reports to target/qat/eval/<model>-<variant>.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
QS=target/release/quantserve
model=$1; shift
mkdir -p target/qat/eval
for v in "$@"; do
  nice -n 10 $QS eval --threads 1 --model "$model" --variant "$v" --json "target/qat/eval/$model-$v.json"
done
nice -n 10 $QS bench --model "$model" --variants "fp32,$(IFS=,; echo "$*")" --batch 1 --threads 1 --seconds 0.2 2>&1 | grep -i -E "variant|weight|MB|bytes" | head -40
