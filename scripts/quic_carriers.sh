#!/usr/bin/env bash
# Issue #18: the QUIC media carriers side by side in ONE run against one release server.
# Starts `palaver` on 127.0.0.1 (free ports, temporary data dir) and runs `palaver-load` with
# the mixing presets over each transport in turn (`--transport quic` = datagrams,
# `quic-srtp` = SRTP over UDP to the worker, `webrtc`), reading the server's CPU from
# /proc/<pid>/stat (`--server-pid`). Prints each run's table; JSON reports land in $CARRIERS_OUT.
#
#   CARGO_TARGET_DIR=target scripts/quic_carriers.sh
#
# Env: CARRIERS_PRESETS (default "mixing10 mixing3 mixing100"), CARRIERS_TRANSPORTS
# (default "quic quic-srtp"), CARRIERS_DURATION (s, default 20), CARRIERS_NO_BUILD=1,
# CARRIERS_OUT (default a temporary directory, kept), CARRIERS_EXTRA (more palaver-load flags).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
profile=${CARRIERS_PROFILE:-release}
server_bin=$target/$profile/palaver
load_bin=$target/$profile/palaver-load
presets=${CARRIERS_PRESETS:-mixing10 mixing3 mixing100}
transports=${CARRIERS_TRANSPORTS:-quic quic-srtp}
duration=${CARRIERS_DURATION:-20}
out=${CARRIERS_OUT:-$(mktemp -d /tmp/palaver-carriers.XXXXXX)}
mkdir -p "$out"

if [[ -z "${CARRIERS_NO_BUILD:-}" ]]; then
    if [[ $profile == release ]]; then build=(--release); else build=(); fi
    (cd "$root" && cargo build "${build[@]}" -p palaver -p palaver-load)
fi
[[ -x $server_bin && -x $load_bin ]] || { echo "missing $server_bin or $load_bin" >&2; exit 2; }

work=$(mktemp -d /tmp/palaver-carriers-server.XXXXXX)
metrics_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/data"
printf '[usage]\nmetrics_listen = "127.0.0.1:%s"\n' "$metrics_port" >"$work/palaver.toml"
server_pid=""
cleanup() {
    if [[ -n $server_pid ]]; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
"$server_bin" --config "$work/palaver.toml" --data-dir "$work/data" --listen 127.0.0.1:0 \
    --log-level warn run >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
line() { sed -n "s/^$1 //p" "$work/server.out" | head -1; }
for _ in $(seq 1 300); do
    [[ -n $(line PALAVER_READY) ]] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.err" >&2; exit 2; }
    sleep 0.1
done
[[ -n $(line PALAVER_READY) ]] || { echo "server not ready after 30 s" >&2; exit 2; }
echo "palaver ($profile) pid $server_pid; $(nproc) CPUs; load average $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%FT%TZ)"

for preset in $presets; do
    for transport in $transports; do
        echo "=== $preset over $transport"
        # shellcheck disable=SC2086
        "$load_bin" --connection-string "$(line PALAVER_CONNECTION_STRING)" --ca "$(line PALAVER_CA_FILE)" \
            --preset "$preset" --transport "$transport" --duration "$duration" \
            --metrics-url "http://127.0.0.1:$metrics_port/metrics" --server-pid "$server_pid" \
            --no-progress --json "$out/$preset-$transport.json" ${CARRIERS_EXTRA:-} || true
        sleep 3 # the previous run's participants leave before the next window
    done
done
echo "JSON reports: $out"
