#!/usr/bin/env bash
# Validate the monitoring assets with promtool (Debian package `prometheus`):
#   the scrape config, the alert/recording rules and their unit tests, and every PromQL
#   expression of the Grafana dashboard (parsed by compiling them as recording rules).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
command -v promtool >/dev/null || { echo "promtool not found (apt-get install prometheus)"; exit 1; }

promtool check config "$here/prometheus/prometheus.yml"
promtool check rules "$here/prometheus/rules/palaver.rules.yml"
(cd "$here/prometheus/rules" && promtool test rules palaver.rules.test.yml)

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
