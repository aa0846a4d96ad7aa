#!/usr/bin/env bash
# schemathesis against the OpenAPI document of a real release server on the default models
# (config/quantserve.toml on a free local port): every operation but /admin/reload (it would
# re-read the configuration mid-run), every check, a time budget. Fails on any failure.
#   tools/schemathesis.sh [SECONDS]       (default 120; needs target/py-openapi, made by .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_BUDGET="${1:-120}"
ST=target/py-openapi/bin/schemathesis
[ -x "$ST" ] || { echo "no $ST: python3 -m venv target/py-openapi && target/py-openapi/bin/pip install -r tests/openapi/requirements.txt" >&2; exit 2; }
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
WORK=$(mktemp -d)
# 200 from GET $1 (python, not curl: nothing beyond the venvs .ci/run makes is assumed).
ok() { python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)' "$1" 2>/dev/null; }
sed "s/^http_addr = .*/http_addr = \"127.0.0.1:$PORT\"/" config/quantserve.toml > "$WORK/server.toml"
target/release/quantserve serve --config "$WORK/server.toml" > "$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 300); do
  ok "http://127.0.0.1:$PORT/health/ready" && break
  kill -0 $SERVER 2>/dev/null || { echo "server exited:" >&2; tail -20 "$WORK/server.log" >&2; exit 1; }
  sleep 1
done
ok "http://127.0.0.1:$PORT/health/ready" || { echo "server not ready after 300 s" >&2; exit 1; }
"$ST" --config-file tests/openapi/schemathesis.toml --no-color run "http://127.0.0.1:$PORT/openapi.json" \
  --exclude-operation-id reload --max-time "$SECONDS_BUDGET" --workers 1 \
  --suppress-health-check too_slow,filter_too_much
# The server must still be up and answering after the run.
ok "http://127.0.0.1:$PORT/health/live" || { echo "server not live after the run" >&2; exit 1; }
if grep -q "panicked" "$WORK/server.log"; then echo "the server panicked:" >&2; grep -A3 panicked "$WORK/server.log" >&2; exit 1; fi
echo "schemathesis: no failures; server alive"
