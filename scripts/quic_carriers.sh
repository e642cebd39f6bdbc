#!/usr/bin/env bash
# Issue #18: mixing density over each media transport, side by side in ONE run, optionally for
# several server builds (before/after). For every preset × transport × server it starts a fresh
# `palaver` on 127.0.0.1 (free ports, temporary data dir, so no earlier run's participants linger
# in their reconnect grace), records its idle RSS, runs `palaver-load` with the server's CPU read
# from /proc/<pid>/stat (`--server-pid`), and stops it. Prints each run's table and, at the end,
# one summary line per run (µs of server CPU per participant-second, participants per core,
# tester CPU, memory per participant). JSON reports land in $CARRIERS_OUT.
#
#   CARGO_TARGET_DIR=target scripts/quic_carriers.sh
#   CARRIERS_SERVERS="before=/tmp/palaver-before after=target/release/palaver" CARRIERS_NO_BUILD=1 \
#     CARRIERS_TRANSPORTS="quic-srtp webrtc" scripts/quic_carriers.sh
#
# Env: CARRIERS_PRESETS (default "mixing10 mixing3 mixing100"), CARRIERS_TRANSPORTS
# (default "quic quic-srtp"; `quic` = datagrams, `quic-srtp` = SRTP over UDP to the worker,
# `webrtc`), or CARRIERS_RUNS (space-separated preset:transport[:extra flags with commas for
# spaces], replacing the presets × transports product, e.g. "mixing10:webrtc idle1000:quic-srtp"),
# CARRIERS_SERVERS (space-separated label=path, default "server=<target>/palaver"; the same
# binary may appear under two labels with CARRIERS_TOML_<label> appended to one's config, e.g.
# CARRIERS_TOML_ticking='[media.mixer]\nrest_when_silent = false'),
# CARRIERS_DURATION (s, default 20), CARRIERS_NO_BUILD=1, CARRIERS_OUT (default a temporary
# directory, kept), CARRIERS_EXTRA (more palaver-load flags for every run), CARRIERS_LOAD (the
# palaver-load binary, default <target>/<profile>/palaver-load).
# The servers of one run are started one after the other (before, after, before, ...), so a
# before/after pair sees the same machine state.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
profile=${CARRIERS_PROFILE:-release}
load_bin=${CARRIERS_LOAD:-$target/$profile/palaver-load}
presets=${CARRIERS_PRESETS:-mixing10 mixing3 mixing100}
transports=${CARRIERS_TRANSPORTS:-quic quic-srtp}
servers=${CARRIERS_SERVERS:-server=$target/$profile/palaver}
duration=${CARRIERS_DURATION:-20}
out=${CARRIERS_OUT:-$(mktemp -d /tmp/palaver-carriers.XXXXXX)}
mkdir -p "$out"

if [[ -z "${CARRIERS_NO_BUILD:-}" ]]; then
    if [[ $profile == release ]]; then build=(--release); else build=(); fi
    (cd "$root" && cargo build "${build[@]}" -p palaver -p palaver-load)
fi
[[ -x $load_bin ]] || { echo "missing $load_bin" >&2; exit 2; }
for entry in $servers; do
    [[ -x ${entry#*=} ]] || { echo "missing server binary ${entry#*=}" >&2; exit 2; }
done

work=""
server_pid=""
stop_server() {
    if [[ -n $server_pid ]]; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
    fi
    [[ -n $work ]] && rm -rf "$work"
    work=""
}
trap stop_server EXIT

line() { sed -n "s/^$1 //p" "$work/server.out" | head -1; }

# Starts `$1` on free ports; sets server_pid, metrics_port and work.
start_server() {
    work=$(mktemp -d /tmp/palaver-carriers-server.XXXXXX)
    metrics_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    mkdir -p "$work/data"
    printf '[usage]\nmetrics_listen = "127.0.0.1:%s"\n' "$metrics_port" >"$work/palaver.toml"
    # Per-server extra configuration: CARRIERS_TOML_<label> (TOML text, `\n` for new lines).
    local extra="CARRIERS_TOML_${2:-}"
    [[ -n ${2:-} && -n ${!extra:-} ]] && printf '%b\n' "${!extra}" >>"$work/palaver.toml"
    "$1" --config "$work/palaver.toml" --data-dir "$work/data" --listen 127.0.0.1:0 \
        --log-level warn run >"$work/server.out" 2>"$work/server.err" &
    server_pid=$!
    for _ in $(seq 1 300); do
        [[ -n $(line PALAVER_READY) ]] && return 0
        kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.err" >&2; exit 2; }
        sleep 0.1
    done
    echo "server not ready after 30 s" >&2
    exit 2
}

echo "$(nproc) CPUs; load average $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%FT%TZ); servers: $servers"
runs=${CARRIERS_RUNS:-}
if [[ -z $runs ]]; then
    for preset in $presets; do
        for transport in $transports; do runs+=" $preset:$transport"; done
    done
fi
for run in $runs; do
    IFS=: read -r preset transport flags <<<"$run"
    flags=${flags//,/ }
    name=$preset-$transport${flags:+-$(echo "$flags" | tr -dc 'a-z0-9')}
    for entry in $servers; do
        label=${entry%%=*}
        start_server "${entry#*=}" "$label"
        sleep 1
        idle_kb=$(awk '/^VmRSS/ {print $2}' "/proc/$server_pid/status")
        echo "=== $preset over $transport ${flags:+($flags) }server $label (pid $server_pid, idle RSS $idle_kb kB, load $(cut -d' ' -f1 /proc/loadavg), $(date -u +%T))"
        # shellcheck disable=SC2086
        "$load_bin" --connection-string "$(line PALAVER_CONNECTION_STRING)" --ca "$(line PALAVER_CA_FILE)" \
            --preset "$preset" --transport "$transport" --duration "$duration" \
            --metrics-url "http://127.0.0.1:$metrics_port/metrics" --server-pid "$server_pid" \
            --no-progress --json "$out/$name--$label.json" ${CARRIERS_EXTRA:-} $flags || true
        echo "$idle_kb" >"$out/$name--$label.idle-rss-kb"
        stop_server
    done
done

python3 "$root/scripts/perf_table.py" "$out"
echo "JSON reports: $out"
