#!/usr/bin/env bash
# Validate the deployment assets (make test-deploy):
#   - monitoring, with promtool (Debian package `prometheus`): the scrape config, the alert and
#     recording rules and their unit tests, and every PromQL expression of the Grafana dashboard
#     (parsed by compiling them as recording rules);
#   - Kubernetes (deploy/k8s): each overlay rendered with `kubectl kustomize`, schema-checked with
#     kubernetes-validate (DEPLOY_PY: a python with deploy/requirements.txt) against Kubernetes
#     1.32 in strict mode, then the policy checks of k8s/check.py. With PALAVER_BIN set, palaver
#     itself parses the rendered palaver.toml.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
command -v promtool >/dev/null || { echo "promtool not found (apt-get install prometheus)"; exit 1; }
command -v kubectl >/dev/null || { echo "kubectl (>= 1.27, with kustomize v5) not found"; exit 1; }
DEPLOY_PY="${DEPLOY_PY:-python3}"
"$DEPLOY_PY" -c 'import kubernetes_validate, yaml' 2>/dev/null \
  || { echo "$DEPLOY_PY lacks kubernetes-validate (pip install -r deploy/requirements.txt)"; exit 1; }

promtool check config "$here/prometheus/prometheus.yml"
promtool check rules "$here/prometheus/rules/palaver.rules.yml" "$here/prometheus/rules/cluster.rules.yml"
(cd "$here/prometheus/rules" && promtool test rules palaver.rules.test.yml cluster.rules.test.yml)

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 - "$here/grafana/palaver-dashboard.json" "$tmp/dashboard.rules.yml" <<'PY'
import json, sys
dash = json.load(open(sys.argv[1]))
exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
assert exprs, "dashboard has no queries"
with open(sys.argv[2], "w") as out:
    out.write("groups:\n  - name: dashboard\n    rules:\n")
    for i, e in enumerate(exprs):
        e = e.replace("$__range", "1h").replace("$__interval", "1m").replace('job=~"$job"', 'job=~".+"')
        out.write(f"      - record: dashboard:expr_{i}\n        expr: {json.dumps(e)}\n")
print(f"dashboard: {len(exprs)} queries")
PY
promtool check rules "$tmp/dashboard.rules.yml"
echo "deploy: monitoring assets OK"

palaver_args=()
[ -n "${PALAVER_BIN:-}" ] && [ -x "${PALAVER_BIN}" ] && palaver_args=(--palaver "$PALAVER_BIN")
for overlay in dev prod; do
  kubectl kustomize "$here/k8s/overlays/$overlay" > "$tmp/$overlay.yaml"
  "$DEPLOY_PY" -m kubernetes_validate -k 1.32.0 --strict --quiet "$tmp/$overlay.yaml"
  "$DEPLOY_PY" "$here/k8s/check.py" "$overlay" "$tmp/$overlay.yaml" "${palaver_args[@]}"
done
# The schema check is live: a manifest with a wrong type must be refused.
sed 's/^  replicas: 3$/  replicas: three/' "$tmp/prod.yaml" > "$tmp/broken.yaml"
if "$DEPLOY_PY" -m kubernetes_validate -k 1.32.0 --strict --quiet "$tmp/broken.yaml" >/dev/null 2>&1; then
  echo "kubernetes-validate accepted replicas: three"; exit 1
fi
echo "deploy: Kubernetes manifests OK"
