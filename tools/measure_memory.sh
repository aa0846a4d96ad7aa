#!/usr/bin/env bash
# Resident memory of `quantserve serve` per set of loaded variants, to size containers
# (deploy/k8s resources, README "Deploy").
#
#   tools/measure_memory.sh            # uses target/release/quantserve and ./models
#   SETS="int4-g64;bcq2;low-freq" MODELS_DIR=/tmp/repo tools/measure_memory.sh
#                                      # other variant sets (`;` between sets, spaces within),
#                                      # from another model repository; sets without fp32 get
#                                      # min_agreement 0 (this measures memory, not quality)
#
# For each variant set: start the server with config/quantserve.toml but that set of variants for
# all three models, wait until every variant is loaded, run a workload (64 classify inputs and 64
# four-sentence translations per variant and direction, the largest request the default limits
# allow), then read VmRSS (resident now) and VmHWM (peak resident) from /proc/<pid>/status.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${QUANTSERVE_BIN:-target/release/quantserve}
PORT=${PORT:-18181}
URL=http://127.0.0.1:$PORT
tmp=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT

long_text='The committee met on Tuesday to discuss the budget for next year. Several members raised concerns about the cost of the new building. The chair promised a full report before the end of the month. Everyone agreed to meet again in two weeks.'
python3 - "$long_text" >"$tmp/classify.json" <<'EOF'
import json, sys
print(json.dumps({"inputs": [f"{i} {sys.argv[1]}" for i in range(64)], "truncate": True}))
EOF

printf '| variants loaded | VmRSS after load + workload | VmHWM (peak) |\n|---|---:|---:|\n'
IFS=';' read -r -a sets <<<"${SETS:-int8;fp32;int8 fp32}"
for set in "${sets[@]}"; do
    default=${set%% *}
    list=$(printf '"%s",' $set)
    # The shipped routing (int8 with 5 % shadow on fp32) would load fp32 into every set: a set
    # without both variants gets the default routing (all traffic to its default variant).
    strip_routing='/^\[models\..*\.routing\]/d; /^split = /d; /^shadow = /d'
    [ "$set" = "int8 fp32" ] && strip_routing=''
    agreement=''
    [[ " $set " == *" fp32 "* ]] || agreement='/^min_agreement = /d; s/^(default_variant = .*)$/\1\nmin_agreement = 0.0/'
    sed -E "s/^variants = .*/variants = [${list%,}]/; s/^default_variant = .*/default_variant = \"$default\"/; $strip_routing; $agreement; s|^models_dir = .*|models_dir = \"${MODELS_DIR:-models}\"|" \
        config/quantserve.toml >"$tmp/config.toml"
    "$BIN" serve --config "$tmp/config.toml" --http-addr "127.0.0.1:$PORT" 2>"$tmp/server.log" &
    pid=$!
    for _ in $(seq 600); do
        models=$(curl -s "$URL/v1/models" || true)
        if [ -n "$models" ] && ! grep -q '"status":"loading"' <<<"$models"; then break; fi
        sleep 0.5
    done
    grep -q '"status":"ready"' <<<"$models" || { cat "$tmp/server.log"; echo "server not ready" >&2; exit 1; }
    for v in $set; do
        curl -sf -o /dev/null "$URL/classify" -H 'content-type: application/json' \
            -d "$(sed "s/}\$/, \"variant\": \"$v\"}/" "$tmp/classify.json")"
        for pair in "en pt" "pt en"; do
            read -r s t <<<"$pair"
            python3 -c 'import json,sys; print(json.dumps({"q": [f"{i} {sys.argv[1]}" for i in range(64)], "source": sys.argv[2], "target": sys.argv[3], "variant": sys.argv[4]}))' \
                "$long_text" "$s" "$t" "$v" >"$tmp/translate.json"
            curl -sf -o /dev/null "$URL/translate" -H 'content-type: application/json' -d @"$tmp/translate.json"
        done
    done
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
    hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
    printf '| %s (3 models) | %d MiB | %d MiB |\n' "$set" $((rss / 1024)) $((hwm / 1024))
    kill -TERM "$pid"
    wait "$pid" || true
    pid=
done
