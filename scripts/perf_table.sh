#!/usr/bin/env bash
# Issue #18's README table in one command: every shape of the issue over WebRTC (SRTP/UDP) and
# QUIC, for a `before` and an `after` server build, in one run on one machine, then the
# kernel's loopback floor (`udp_loopback` bench) when its binary is given. Each run starts a
# fresh server (scripts/quic_carriers.sh does the runs; scripts/perf_table.py prints the table).
#
#   PERF_BEFORE=/tmp/palaver-before PERF_AFTER=target/release/palaver \
#     PERF_LOAD=target/release/palaver-load scripts/perf_table.sh
#
# Shapes (palaver-load presets, docs/load.md): mixing10 (10 × 10, 2 talkers), mixing3 (30 × 3,
# 1 talker), mixing100 (1 × 100, 3 talkers), all without DTX (everyone 50 pps, listeners send
# −70 dBov noise with RFC 6464 levels); density500 (50 × 10, 2 talkers, no DTX: 500 participants
# over QUIC); forwarding (1 talker → 299 listeners, passthrough); idle1000 (1,000 silent).
# "QUIC" is the QUIC transport with its SRTP media carrier (`quic-srtp`, docs/quic.md); the
# datagram carrier (`quic`) runs for mixing10 as the issue's "today".
#
# Env: PERF_BEFORE, PERF_AFTER (server binaries; either may be left out to run one build),
# PERF_LOAD (palaver-load), PERF_FLOOR (the `udp_loopback` bench binary, optional), PERF_DURATION
# (s per run, default 15), PERF_RUNS (override the run list, quic_carriers.sh's CARRIERS_RUNS),
# PERF_EXTRA (flags for every run, e.g. "--rooms 1 --participants 4" for a quick check),
# PERF_OUT (report directory, default a new temporary one). The runs go in order of priority and
# every report is kept as it lands, so an interrupted run still prints the table of what ran
# (`python3 scripts/perf_table.py <dir>`). About 20 minutes with the defaults on a 2-core VM.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
servers=""
[[ -n ${PERF_BEFORE:-} ]] && servers+="before=$PERF_BEFORE "
[[ -n ${PERF_AFTER:-} ]] && servers+="after=$PERF_AFTER"
[[ -n $servers ]] || { echo "set PERF_BEFORE and/or PERF_AFTER" >&2; exit 2; }
[[ -n ${PERF_LOAD:-} ]] || { echo "set PERF_LOAD (palaver-load binary)" >&2; exit 2; }

default_runs="mixing10:quic-srtp mixing10:webrtc mixing3:quic-srtp mixing3:webrtc mixing100:quic-srtp \
mixing100:webrtc density500:quic-srtp forwarding:quic-srtp forwarding:webrtc idle1000:quic-srtp mixing10:quic \
idle1000:quic"
out=${PERF_OUT:-$(mktemp -d /tmp/palaver-perf.XXXXXX)}
started=$(date +%s)

echo "# palaver perf table: $(date -u +%FT%TZ), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))," \
    "$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), kernel $(uname -r)"
echo "# servers: $servers; load: $PERF_LOAD; duration ${PERF_DURATION:-15} s; extra: ${PERF_EXTRA:-none}"

CARRIERS_NO_BUILD=1 CARRIERS_LOAD=$PERF_LOAD CARRIERS_SERVERS="$servers" CARRIERS_OUT=$out \
    CARRIERS_DURATION=${PERF_DURATION:-15} CARRIERS_RUNS=${PERF_RUNS:-$default_runs} \
    CARRIERS_EXTRA=${PERF_EXTRA:-} "$root/scripts/quic_carriers.sh"

if [[ -n ${PERF_FLOOR:-} ]]; then
    echo "# kernel floor on loopback (udp_loopback bench, sender CPU per 100-byte datagram)"
    "$PERF_FLOOR" --bench udp_loopback_send/epoll_readers 2>&1 | grep -E '^udp_loopback|time:' || true
fi
echo "# total $(( $(date +%s) - started )) s; reports in $out"
