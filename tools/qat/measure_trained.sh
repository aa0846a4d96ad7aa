#!/usr/bin/env bash
# The README's "Trained below 8 bits" table and charts in one run: quality (`quantserve eval`)
# and speed (`quantserve bench`, batch 1 and 32, 2 threads) of every committed trained variant
# beside its post-training twin, and a speed-vs-quality chart per model (docs/trained-<m>.svg).
#   tools/qat/measure_trained.sh        # 3.6 min on this 2-core machine (2026-12-07); speed needs a quiet machine
# Twins: the single schemes are derived from fp32 at load; the mixed recipes' twins are
# quantized here from fp32 into target/qat/measure/models/<model>/mixed. Reports (eval and
# bench JSON) go to target/qat/measure/.
set -euo pipefail
cd "$(dirname "$0")/../.."
QS=${QS:-target/release/quantserve}
OUT=target/qat/measure
ROOT=$OUT/models
rm -rf "$ROOT" "$OUT/evals"
mkdir -p "$OUT/evals"
for m in sentiment en-pt pt-en; do
  mkdir -p "$ROOT/$m"
  for d in models/$m/*/; do ln -s "$PWD/$d" "$ROOT/$m/$(basename "$d")"; done
done
$QS quantize --model models/sentiment/fp32 --recipe tools/qat/recipes/sentiment-mixed-kd.toml \
  --freq-corpus data/corpus/sentiment-train.txt --out "$ROOT/sentiment/mixed"
$QS quantize --model models/en-pt/fp32 --recipe tools/qat/recipes/mixed-kd.toml \
  --freq-corpus data/corpus/bible-en.txt --freq-corpus data/corpus/bible-pt.txt \
  --out "$ROOT/en-pt/mixed"
declare -A VARIANTS=(
  [sentiment]=int4,int4-kd,ternary-row,ternary-kd,bcq2,bcq2-kd,mixed,mixed-kd
  [en-pt]=int4-g64,int4-kd,ternary-row,ternary-kd,mixed,mixed-kd
  [pt-en]=int4-g64,int4-kd
)
for m in sentiment en-pt pt-en; do
  for v in fp32 ${VARIANTS[$m]//,/ }; do
    $QS eval --models "$ROOT" --model "$m" --variant "$v" --json "$OUT/evals/$m-$v.json"
  done
  $QS bench --models "$ROOT" --model "$m" --variants "fp32,${VARIANTS[$m]}" --batch 1,32 \
    --threads 2 --seconds 2 --json "$OUT/bench-$m.json" --svg "docs/trained-$m.svg" \
    --eval-dir "$OUT/evals"
done
