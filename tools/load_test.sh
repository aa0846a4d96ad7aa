#!/usr/bin/env bash
# Load test of a running quantserve with `hey` (Debian: apt-get install -y hey).
#
#   quantserve serve --config config/quantserve.toml &      # wait for /health/ready
#   tools/load_test.sh [BASE_URL] [DURATION] [CONCURRENCY]
#
#   BASE_URL     default http://127.0.0.1:8080 (loopback only: this script refuses other hosts)
#   DURATION     per scenario, hey syntax, default 20s
#   CONCURRENCY  concurrent clients, default 16
#   API_KEY      env: sent as `Authorization: Bearer $API_KEY` when set
#
# Scenarios: translate en->pt (one sentence), translate en->pt (a 4-sentence text, split and
# batched by sentence), classify (skipped when the server does not serve a classifier). Each
# prints hey's latency histogram and status-code counts (429 = queue full, 504 = deadline); the
# script ends with the batch-size and queue metrics from /metrics.
set -euo pipefail

BASE_URL=${1:-http://127.0.0.1:8080}
DURATION=${2:-20s}
CONCURRENCY=${3:-16}

case "$BASE_URL" in
  http://127.*|http://localhost[:/]*|http://localhost|http://\[::1\]*) ;;
  *) echo "refusing to load-test $BASE_URL: only loopback addresses" >&2; exit 2 ;;
esac
command -v hey >/dev/null || { echo "hey is not installed: apt-get install -y hey" >&2; exit 2; }

auth=()
[ -n "${API_KEY:-}" ] && auth=(-H "Authorization: Bearer $API_KEY")

ready=$(curl -s -o /dev/null -w '%{http_code}' "$BASE_URL/health/ready" || true)
[ "$ready" = 200 ] || { echo "$BASE_URL/health/ready answered '$ready', not 200" >&2; exit 1; }

run() {  # name path json
  echo "=== $1: $DURATION at concurrency $CONCURRENCY"
  hey -z "$DURATION" -c "$CONCURRENCY" -m POST -T application/json "${auth[@]}" -d "$3" "$BASE_URL$2" \
    | awk '/^Details/ {skip = 1} /^Status code distribution/ {skip = 0} !skip'
}

run "translate, one sentence" /translate \
  '{"q": "How are you today?", "source": "en", "target": "pt"}'
run "translate, four sentences" /translate \
  '{"q": "The weather is nice today. Let us go for a walk! Where is the train station? I would like a cup of coffee.", "source": "en", "target": "pt"}'

models=$(curl -s "${auth[@]}" "$BASE_URL/v1/models")
if grep -q '"task":"classify"' <<<"$models"; then
  run "classify, two texts" /classify '{"inputs": ["What a great movie!", "I did not like it at all."]}'
else
  echo "=== classify: skipped (no classifier served)"
fi

echo "=== metrics"
curl -s "$BASE_URL/metrics" | grep -E '^quantserve_(batch_size|queue_duration_seconds)_(sum|count)|^quantserve_requests_total' || true
